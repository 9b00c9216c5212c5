"""Every third-party module the installed packages import comes from a distribution pyproject.toml
declares: a module that only arrives as another package's dependency can disappear with that package's
next release (and the wheel's users would find out at import time)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OURS = {"driftloop", "driftloop_feedback", "driftloop_graphs", "driftloop_servers"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {_normal(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def wheel_roots() -> list[Path]:
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    return [REPO / p for p in build["targets"]["wheel"]["packages"]]


def imported_modules(roots: list[Path], base: Path = REPO) -> dict[str, set[str]]:
    """Top-level module -> the files importing it (absolute imports, standard library left out)."""
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OURS:
                        found.setdefault(top, set()).add(str(path.relative_to(base)))
    return found


def undeclared(found: dict[str, set[str]], deps: set[str]) -> dict[str, str]:
    """Module -> what is wrong with it, for each module no declared distribution provides."""
    providers = importlib.metadata.packages_distributions()
    problems = {}
    for module, files in sorted(found.items()):
        dists = {_normal(d) for d in providers.get(module, [])}
        if not dists:
            problems[module] = f"no installed distribution provides it (imported by {sorted(files)})"
        elif not dists & deps:
            problems[module] = f"from {sorted(dists)}, not declared (imported by {sorted(files)[:3]})"
    return problems


def test_every_imported_third_party_module_is_declared() -> None:
    found = imported_modules(wheel_roots())
    assert {"numpy", "sklearn", "mlserver"} <= found.keys()  # the walk sees the packages' imports
    assert undeclared(found, declared()) == {}


def test_a_module_only_a_dependency_brings_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("import threadpoolctl\nimport json\nfrom . import other\n")
    found = imported_modules([package], tmp_path)
    assert set(found) == {"threadpoolctl"}
    assert set(undeclared(found, {"scikit-learn"})) == {"threadpoolctl"}
    assert undeclared(found, {"threadpoolctl"}) == {}
