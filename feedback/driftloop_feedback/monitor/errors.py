"""The drift monitor's errors; every message says what to do next."""

from __future__ import annotations

from driftloop_feedback.errors import FeedbackError


class MonitorError(FeedbackError):
    """Base class of the drift monitor's errors."""


class MonitorStateError(MonitorError):
    """The monitor's state file cannot be read or written."""


class MonitorStateSourceError(MonitorStateError):
    """The monitor's state file was taken from another log, consumer group or topic."""
