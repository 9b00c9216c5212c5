"""Build hook: compiles driftloop's C extensions with setuptools' ``build_ext``:

- ``driftloop.eventlog._recordcodec``: Kafka record batch v2 records, decoded and encoded;
- ``driftloop_feedback.join._storekernel``: the pending store's take and add loops;
- ``driftloop_graphs._httpfast``: the ingress's one-call parsing of whole, plain HTTP/1.1 messages.

Each has a Python reference implementation beside it, which runs where it is not built. They are
compiled in place, next to their sources, for editable installs (``make setup`` / ``.ci/setup``) and
wheels alike; a wheel then carries them and is tagged for this platform. A machine without a C
compiler or Python's headers fails here with the compiler's message: install gcc and the Python
development headers (Debian: ``build-essential python3-dev``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# (module, C source)
EXTENSIONS = [
    ("driftloop.eventlog._recordcodec", "driftloop/eventlog/_recordcodec.c"),
    ("driftloop_feedback.join._storekernel", "feedback/driftloop_feedback/join/_storekernel.c"),
    ("driftloop_graphs._httpfast", "graphs/driftloop_graphs/_httpfast.c"),
]


class NativeBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        built = compile_in_place(Path(self.root))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":  # an editable install imports them from the source tree
            for path, target in built.items():
                build_data["force_include"][str(path)] = target


def compile_in_place(root: Path) -> dict[Path, str]:
    """Build every extension next to its source; returns each built file and its path in a wheel."""
    from setuptools import Distribution, Extension

    built: dict[Path, str] = {}
    for module, source in EXTENSIONS:
        extension = Extension(
            module,
            [source],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"],
        )
        with contextlib.chdir(root):  # build_ext places an in-place build relative to the working directory
            # feedback/ and graphs/ hold their packages (as pyproject's wheel packages say)
            dist = Distribution(
                {
                    "name": "driftloop-native",
                    "ext_modules": [extension],
                    "package_dir": {
                        "driftloop_feedback": "feedback/driftloop_feedback",
                        "driftloop_graphs": "graphs/driftloop_graphs",
                    },
                }
            )
            command: Any = dist.get_command_obj("build_ext")
            command.inplace = True
            command.build_temp = str(Path("build") / "native")
            command.ensure_finalized()
            command.run()
            filename = Path(command.get_ext_filename(module)).name
        package = module.rpartition(".")[0].replace(".", "/")
        built[root / Path(source).parent / filename] = f"{package}/{filename}"
    return built
