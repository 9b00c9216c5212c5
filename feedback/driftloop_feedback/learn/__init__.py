"""The trainer: a challenger that starts from the registered champion, learns every labelled example
once with ``partial_fit`` (mini-batches, a replay buffer of older examples), and cuts candidates by a
policy (drift event, champion degradation, schedule), each one an MLflow run and a registered version
with alias ``challenger``. See docs/trainer.md."""

from driftloop_feedback.learn.policy import CandidatePolicy, Trigger
from driftloop_feedback.learn.replay import ReplayBuffer
from driftloop_feedback.learn.settings import CandidatePolicySettings, TrainerSettings
from driftloop_feedback.learn.worker import TrainerWorker

__all__ = [
    "CandidatePolicy",
    "CandidatePolicySettings",
    "ReplayBuffer",
    "TrainerSettings",
    "TrainerWorker",
    "Trigger",
]
