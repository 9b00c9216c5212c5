"""Errors of the feedback service and the joiner; every message says what to do next."""

from __future__ import annotations

from driftloop.errors import ConfigurationError, DriftloopError


class FeedbackError(DriftloopError):
    """Base class of the feedback service's and the joiner's errors."""


class FeedbackConfigError(FeedbackError, ConfigurationError):
    """A feedback/joiner setting is missing or unsafe (e.g. a placeholder token in production)."""


class TopologyError(FeedbackError):
    """The joiner's input topics are not co-partitioned (different partition counts)."""


class SnapshotError(FeedbackError):
    """A joiner snapshot cannot be read or written."""
