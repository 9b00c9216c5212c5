"""Errors of the loop's report; every message says what to do next."""

from __future__ import annotations

from driftloop_feedback.errors import FeedbackError


class ReportError(FeedbackError):
    """The report cannot be made from what was given (e.g. no labelled examples, a model that does not fit
    the examples' features); the message names the input to fix."""
