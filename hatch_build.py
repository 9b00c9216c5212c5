"""Build hook: compiles driftloop's one C extension, ``driftloop.eventlog._recordcodec`` (the Kafka
record batch v2 codec, see ``driftloop/eventlog/_recordcodec.c``), with setuptools' ``build_ext``.

It is compiled in place, next to its source, for editable installs (``make setup`` / ``.ci/setup``)
and wheels alike; a wheel then carries it and is tagged for this platform. A machine without a C
compiler or Python's headers fails here with the compiler's message: install gcc and the Python
development headers (Debian: ``build-essential python3-dev``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "driftloop/eventlog/_recordcodec.c"
MODULE = "driftloop.eventlog._recordcodec"


class RecordCodecBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = compile_in_place(Path(self.root))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports it from the source tree
            build_data["force_include"][str(built)] = str(built.relative_to(self.root))


def compile_in_place(root: Path) -> Path:
    from setuptools import Distribution, Extension

    extension = Extension(
        MODULE,
        [SOURCE],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"],
    )
    with contextlib.chdir(root):  # build_ext places an in-place build relative to the working directory
        dist = Distribution({"name": "driftloop-recordcodec", "ext_modules": [extension]})
        command: Any = dist.get_command_obj("build_ext")
        command.inplace = True
        command.build_temp = str(Path("build") / "recordcodec")
        command.ensure_finalized()
        command.run()
        return root / command.get_ext_filename(MODULE)
