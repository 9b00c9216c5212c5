"""Errors of the local Seldon runtime. Messages say what was wrong and what to do next.

Every error answer of the ingress and the control API has one JSON shape,
``{"error": "<what was wrong and what to do>", "code": "<stable machine-readable reason>"}``, built by
:func:`error_body`; MLServer's own ``{"error": ...}`` and FastAPI's ``{"detail": ...}`` are rewritten
into it before they reach a client."""

from __future__ import annotations

import orjson

from driftloop.errors import DriftloopError


def error_body(code: str, message: str) -> bytes:
    """The JSON body of an error answer (see the module docstring)."""
    return orjson.dumps({"error": message, "code": code})


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
