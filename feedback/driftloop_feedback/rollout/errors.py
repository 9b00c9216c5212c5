"""Errors of the rollout controller; every message says what to do next."""

from __future__ import annotations

from driftloop.errors import ConfigurationError
from driftloop_feedback.errors import FeedbackError


class RolloutError(FeedbackError):
    """Base class of the rollout controller's errors."""


class RolloutConfigError(RolloutError, ConfigurationError):
    """A rollout setting is missing or inconsistent (e.g. step weights that do not increase)."""


class BackendError(RolloutError):
    """The traffic backend (the local runtime's control API, later Kubernetes) refused or failed a call."""


class LeaseHeldError(RolloutError):
    """Another controller holds the deployment's rollout lease: one rollout at a time per deployment."""


class LeaseLostError(RolloutError):
    """This controller's lease was taken over (it expired): stop touching the deployment at once."""
