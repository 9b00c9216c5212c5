"""Each C extension, built again with AddressSanitizer and UndefinedBehaviorSanitizer, runs its own
test module in a child process: out-of-bounds reads and writes, use after free and undefined
behaviour in driftloop's C code fail the test instead of passing unnoticed. ``PYTHONMALLOC=malloc``
gives every Python object its own allocation, so a read past a ``bytes`` buffer reaches ASan's
redzone instead of a neighbour in pymalloc's arena."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _extensions() -> list[tuple[str, str]]:
    """``hatch_build.EXTENSIONS`` (read, not imported: the build hook needs hatchling, a build-time
    dependency only)."""
    tree = ast.parse((REPO / "hatch_build.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXTENSIONS" for t in node.targets):
            return [tuple(pair) for pair in ast.literal_eval(node.value)]
    raise AssertionError("hatch_build.py has no EXTENSIONS list")


EXTENSIONS = _extensions()
TESTS = {
    "driftloop.eventlog._recordcodec": "tests/eventlog/test_record_codec.py",
    "driftloop_feedback.join._storekernel": "tests/feedback/test_store_kernel.py",
    "driftloop_graphs._httpfast": "tests/graphs/test_httpfast.py",
}
# The child loads the instrumented builds under the modules' own names before anything imports them.
BOOTSTRAP = """
import importlib.util, sys
import pytest
for name, path in zip(sys.argv[1::2], sys.argv[2::2]):
    if name == "--":
        break
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
tests = sys.argv[sys.argv.index("--") + 1:]
sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-x", *tests]))  # -s: a report reaches stderr
"""


def _runtime(name: str) -> str:
    found = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(found):
        raise RuntimeError(f"gcc has no {name}: install the sanitizer runtimes (Debian: libasan8 libubsan1)")
    return found


def _build(module: str, source: str, out: Path) -> Path:
    target = out / (module.rpartition(".")[2] + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    command = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer"]
    command += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    command += [f"-I{include}", str(REPO / source), "-o", str(target)]
    subprocess.run(command, check=True, capture_output=True)
    return target


def test_every_c_extension_has_a_sanitizer_run() -> None:
    assert {module for module, _ in EXTENSIONS} == set(TESTS)


@pytest.mark.parametrize(("module", "source"), EXTENSIONS, ids=[m for m, _ in EXTENSIONS])
@pytest.mark.timeout(600)
def test_c_extension_passes_its_tests_under_asan_and_ubsan(module: str, source: str, tmp_path: Path) -> None:
    built = _build(module, source, tmp_path)
    env = {
        **os.environ,
        "LD_PRELOAD": f"{_runtime('libasan.so')}:{_runtime('libubsan.so')}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",  # leaks: the tests' tracemalloc checks
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=87",
        "PYTHONMALLOC": "malloc",
    }
    result = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, module, str(built), "--", TESTS[module]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    report = result.stdout[-2000:] + result.stderr[-6000:]
    assert result.returncode == 0, report
    assert "ERROR: AddressSanitizer" not in report and "runtime error:" not in report, report
