"""Errors of the local Seldon runtime. Messages say what was wrong and what to do next."""

from __future__ import annotations

from driftloop.errors import DriftloopError


class GraphError(DriftloopError):
    """Base class of the local runtime's errors."""


class ManifestError(GraphError):
    """A manifest file cannot be read or parsed, or holds no SeldonDeployment."""


class InvalidDeployment(GraphError):
    """A SeldonDeployment failed validation; ``issues`` lists every problem found."""

    def __init__(self, name: str, issues: list[object]) -> None:
        self.issues = issues
        lines = "\n  ".join(str(issue) for issue in issues)
        super().__init__(f"SeldonDeployment {name!r} is invalid:\n  {lines}")


class UnsupportedLocally(GraphError):
    """The manifest is valid for Seldon Core but asks for something the local runtime cannot run."""


class RuntimeStartError(GraphError):
    """An MLServer process or the ingress failed to start."""
