"""The house's import rules, checked on the source (issue 13 part 0, STYLE.md):

- no library module imports the CLI (``driftloop.cli``): each part owns its commands;
- data flows one way: the feedback side (join, learn, validate, roll out) reaches serving only through
  its interfaces (control API, Kubernetes API), never by importing ``driftloop_graphs``;
- the serving runtimes (``driftloop_servers``) import neither the graphs nor the feedback side;
- the shared floor (``driftloop`` outside its CLI) imports none of the parts above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "driftloop": ROOT / "driftloop",
    "driftloop_servers": ROOT / "servers" / "driftloop_servers",
    "driftloop_graphs": ROOT / "graphs" / "driftloop_graphs",
    "driftloop_feedback": ROOT / "feedback" / "driftloop_feedback",
}
# importer package (or module prefix) -> packages it must not import
FORBIDDEN = {
    "driftloop_feedback": ("driftloop_graphs", "driftloop.cli"),
    "driftloop_servers": ("driftloop_graphs", "driftloop_feedback", "driftloop.cli"),
    "driftloop_graphs": ("driftloop_feedback", "driftloop.cli"),
    "driftloop": ("driftloop_graphs", "driftloop_feedback", "driftloop.cli"),
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def library_modules() -> list[tuple[str, Path]]:
    out = []
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            module = ".".join((package, *path.relative_to(folder).with_suffix("").parts))
            if module.startswith("driftloop.cli") or module == "driftloop.__main__":
                continue  # the CLI group itself may name anything (lazily)
            out.append((module, path))
    return out


def violations(module: str, path: Path) -> list[str]:
    package = module.split(".")[0]
    banned = FORBIDDEN[package]
    return [
        f"{module} imports {name}"
        for name in sorted(imported_modules(path))
        if any(name == b or name.startswith(b + ".") for b in banned)
    ]


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The checker itself: a feedback module importing the CLI and the local runtime is caught."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from driftloop.cli.serve import x\nimport driftloop_graphs.runtime\nimport driftloop.eventlog\n"
    )
    assert violations("driftloop_feedback.x", probe) == [
        "driftloop_feedback.x imports driftloop.cli.serve",
        "driftloop_feedback.x imports driftloop_graphs.runtime",
    ]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_imports_flow_one_way(package: str) -> None:
    found = [
        v
        for module, path in library_modules()
        if module.split(".")[0] == package
        for v in violations(module, path)
    ]
    assert found == [], "\n".join(found)
