"""The trainer's errors; every message says what to do next."""

from __future__ import annotations

from driftloop_feedback.errors import FeedbackError


class TrainerError(FeedbackError):
    """Base class of the trainer's errors."""


class ChampionUnavailable(TrainerError):
    """No champion to start from (none registered yet, or the registry cannot be reached)."""


class CheckpointError(TrainerError):
    """The trainer's checkpoint cannot be read or written."""


class CheckpointSourceError(CheckpointError):
    """The trainer's checkpoint was taken from another log, consumer group or topics."""
