"""Every decision of the controller is one JSON record on ``driftloop.rollouts`` (key = the deployment,
``<namespace>/<name>``), durable before the controller acts on the next one. ``phase`` is the rollout's
phase after the decision; a restarted controller reads the deployment's last record to resume or finish.

>>> e = RolloutEvent("plant/pump", "pump", "step", "progressing", candidate=7, champion=6, weight=10)
>>> RolloutEvent.decode(e.encode()) == e
True
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

from driftloop.eventlog import EventLog, EventLogError, Producer
from driftloop_feedback.rollout.errors import RolloutError

Phase = Literal["idle", "progressing", "promoting", "rolling_back"]
# started: candidate on the canary at weight 0; step: a new weight; check: a check that did not move the
# weight (wait, or a failed check); promoting/promoted; rolling_back/rolled_back (failed checks, progress
# deadline, budget used); aborted: traffic split without an owner set back to main; resumed: after a restart
DECISIONS = (
    "started",
    "step",
    "check",
    "promoting",
    "promoted",
    "rolling_back",
    "rolled_back",
    "aborted",
    "resumed",
)


@dataclass(frozen=True)
class RolloutEvent:
    deployment: str
    model: str
    decision: str
    phase: Phase
    candidate: int | None = None
    champion: int | None = None
    weight: int = 0
    step: int = -1
    failed_checks: int = 0
    result: str = ""  # a check's result: passed, failed, inconclusive
    reason: str = ""
    at: float = 0.0
    controller: str = ""
    gate: dict[str, Any] | None = field(default=None, compare=True)  # which test decided, verdict, n, bounds
    ops: dict[str, Any] | None = None  # error rates, p99s, request counts of the interval

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def decode(cls, value: bytes) -> RolloutEvent:
        try:
            data = orjson.loads(value)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise RolloutError(f"not a rollout event: {exc!r}; value={value[:200]!r}") from exc


class EventWriter:
    def __init__(self, log: EventLog, topic: str) -> None:
        self.topic = topic
        log.create_topic(topic, 1)
        self._producer: Producer = log.producer()

    def write(self, event: RolloutEvent) -> None:
        """Send and wait until the log has it (a decision is durable before the next action)."""
        self._producer.send(self.topic, event.encode(), key=event.deployment.encode()).get(30.0)

    def close(self) -> None:
        self._producer.close()


def read_history(
    log: EventLog, topic: str, deployment: str, *, timeout_s: float = 30.0
) -> list[RolloutEvent]:
    """Every decision recorded for ``deployment``, oldest first (reads the whole topic, commits nothing)."""
    try:
        log.partitions_for(topic)
    except EventLogError:
        return []
    ends = {p: o for p, o in log.end_offsets(topic).items() if o > 0}
    if not ends:
        return []
    consumer = log.consumer(f"driftloop-rollout-history-{uuid.uuid4().hex[:12]}", [topic])
    seen: dict[int, int] = {}
    found: list[RolloutEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while any(seen.get(p, -1) + 1 < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise RolloutError(f"could not read {topic!r} to its end within {timeout_s:.0f} s")
            for record in consumer.poll(0.5, 1000):
                seen[record.partition] = max(seen.get(record.partition, -1), record.offset)
                if record.key is not None and record.key.decode(errors="replace") != deployment:
                    continue
                try:
                    event = RolloutEvent.decode(record.value)
                except RolloutError:
                    continue  # not ours to judge; the decision history is what we wrote
                if event.deployment == deployment:
                    found.append(event)
    finally:
        consumer.close()
    return found


def last_event(log: EventLog, topic: str, deployment: str) -> RolloutEvent | None:
    history = read_history(log, topic, deployment)
    return history[-1] if history else None
