"""The rollout controller: a validated challenger goes to the canary predictor, traffic steps up gated on
the canary's own ground truth (the validator's anytime-valid paired test) and on its operations (5xx
rate, p99 latency against main), then it is promoted or rolled back automatically.

- ``settings.RolloutSettings`` (``DRIFTLOOP_ROLLOUT_*``): Flagger's stepWeight(s), maxWeight, interval,
  threshold, progress deadline; the ops limits.
- ``controller.RolloutController``: the state machine, ``tick(now)`` with an injected clock.
- ``backend.TrafficBackend``: the port to the deployment; ``local_backend.LocalControlBackend`` is the
  local runtime's control API (a Kubernetes adapter fits the same Protocol).
- ``lease.FileLease``: one controller per deployment; ``events``: decisions on ``driftloop.rollouts``.
- ``evidence.StepEvidence`` (ground truth) and ``ops`` (ingress metrics): the two gates of a step.

See docs/rollout.md.
"""

from driftloop_feedback.rollout.backend import DeploymentState, TrafficBackend
from driftloop_feedback.rollout.controller import STATUS_TAG, RolloutController, RolloutRegistry
from driftloop_feedback.rollout.errors import (
    BackendError,
    LeaseHeldError,
    LeaseLostError,
    RolloutConfigError,
    RolloutError,
)
from driftloop_feedback.rollout.events import RolloutEvent, last_event, read_history
from driftloop_feedback.rollout.lease import FileLease, Lease
from driftloop_feedback.rollout.settings import RolloutSettings

__all__ = [
    "STATUS_TAG",
    "BackendError",
    "DeploymentState",
    "FileLease",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "RolloutConfigError",
    "RolloutController",
    "RolloutError",
    "RolloutEvent",
    "RolloutRegistry",
    "RolloutSettings",
    "TrafficBackend",
    "last_event",
    "read_history",
]
