"""What the loop wrote, as typed values: the input of the report.

- ``LoggedExample``: one labelled example (``driftloop.labelled``, each ``example_id`` once) and the time
  the log stored it (``log_time``, unix seconds: when the joiner wrote it, i.e. about when its truth
  arrived). Drift events and rollout decisions carry wall-clock times too, so ``log_time`` is the axis
  on which all three line up; ``event_time`` is the telemetry's own clock (simulated in a replay).
- ``CandidateVersion``: one registered candidate (MLflow version tagged ``driftloop.kind=candidate``)
  with its validation verdict and rollout status.
- ``LoopRecords``: everything ``collect`` read, plus what it had to skip (counted, never hidden).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.rollout.events import RolloutEvent


@dataclass(frozen=True)
class LoggedExample:
    example: LabelledExample
    log_time: float


@dataclass(frozen=True)
class CandidateVersion:
    version: int
    parent_version: int | None
    trigger: str
    candidate_id: str
    validation: str | None  # the validator's verdict tag (pass / fail / ...), None before one
    rollout: str | None  # the controller's status tag (promoted / rejected / interrupted), None before one
    reason: str  # the controller's reason tag, "" when none


@dataclass
class LoopRecords:
    examples: list[LoggedExample] = field(default_factory=list)
    drift: list[DriftVerdict] = field(default_factory=list)
    rollouts: list[RolloutEvent] = field(default_factory=list)
    candidates: list[CandidateVersion] | None = None  # None: the registry was not read
    duplicates: int = 0  # labelled records whose example_id was already read (at-least-once topic)
    undecodable: dict[str, int] = field(default_factory=dict)  # per topic: records that did not decode
