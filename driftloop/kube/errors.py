"""Errors of driftloop's Kubernetes adapter and test server."""

from __future__ import annotations

from typing import Any

import httpx

from driftloop.errors import DriftloopError


class KubeError(DriftloopError):
    """Something about the Kubernetes API or the local test server went wrong."""


class KubeAPIError(KubeError):
    """The API server answered with an error ``Status``; ``causes`` lists field-level reasons."""

    def __init__(self, status_code: int, reason: str, message: str, causes: list[dict[str, Any]]) -> None:
        self.status_code = status_code
        self.reason = reason
        self.causes = causes
        super().__init__(f"Kubernetes API {status_code} {reason}: {message}")


def raise_for_status(response: httpx.Response) -> None:
    """Raise :class:`KubeAPIError` carrying the server's ``Status`` (reason, message, causes)."""
    if response.is_success:
        return
    try:
        status = response.json()
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    raise KubeAPIError(
        response.status_code,
        str(status.get("reason") or response.reason_phrase),
        str(status.get("message") or response.text[:500]),
        list((status.get("details") or {}).get("causes") or []),
    )
