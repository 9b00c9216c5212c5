"""Errors of the validator; every message says what to do next."""

from __future__ import annotations

from driftloop.errors import ConfigurationError
from driftloop_feedback.errors import FeedbackError


class ValidatorError(FeedbackError):
    """Base class of the validator's errors."""


class ValidatorConfigError(ValidatorError, ConfigurationError):
    """A validation setting is missing or inconsistent (e.g. no loss bound for an unbounded loss)."""


class BadDifferenceError(ValidatorError, ValueError):
    """A loss difference fed to a sequence is NaN or outside the sequence's bound [-B, B]."""


class SequenceClosedError(ValidatorError):
    """The sequential test has already decided or used its budget: start a new one to keep testing."""
