"""Errors of the runtimes and detectors.

Two families, on purpose:

* request problems inside ``predict`` are MLServer errors (``InvalidTensor`` -> HTTP 400), because MLServer's
  REST and gRPC handlers turn ``MLServerError`` into a response with its ``status_code`` and message;
  anything else would become a 500 with a stack trace in the server log;
* set-up problems (settings, artifacts, detectors) derive from ``driftloop.errors.DriftloopError``; they
  fail ``load()`` (MLServer then refuses to mark the model ready and logs the message).
"""

from __future__ import annotations

from fastapi import status
from mlserver.errors import MLServerError

from driftloop.errors import ConfigurationError, DriftloopError


class InvalidTensor(MLServerError):
    """A request tensor is missing, mis-shaped, of the wrong datatype or holds values the policy refuses."""

    def __init__(self, msg: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(msg, status_code)


class RuntimeSettingsError(ConfigurationError):
    """``parameters.extra`` of a model-settings.json (or its env overrides) is invalid."""


class ArtifactError(ConfigurationError):
    """A model or detector artifact cannot be found or read."""


class DetectorError(DriftloopError):
    """A detector cannot be fitted, saved, loaded or applied; the message says what to change."""
