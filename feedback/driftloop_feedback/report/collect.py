"""Read what the loop wrote: its topics up to their end offsets (taken when ``collect`` starts), through
a fresh consumer group that commits nothing, so no worker's group is disturbed; and, when given a
registry source, its candidate versions.

Labelled examples go through ``LabelledDeduper`` (the topic is at-least-once): each ``example_id`` is
counted once, the duplicates are counted in ``LoopRecords.duplicates``. A record that does not decode is
counted per topic in ``LoopRecords.undecodable`` and logged, never silently dropped.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from driftloop.eventlog import EventLog, EventLogError, Record
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.records import UndecodableRecord
from driftloop_feedback.report.candidates import CandidateSource, read_candidates
from driftloop_feedback.report.errors import ReportError
from driftloop_feedback.report.records import LoggedExample, LoopRecords
from driftloop_feedback.rollout.errors import RolloutError
from driftloop_feedback.rollout.events import RolloutEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportTopics:
    labelled: str = "driftloop.labelled"
    drift: str = "driftloop.drift"
    rollouts: str = "driftloop.rollouts"


def read_to_end(
    event_log: EventLog, topic: str, *, timeout_s: float = 30.0, clock: Callable[[], float] = time.monotonic
) -> Iterator[Record]:
    """Every record of ``topic`` up to its end offsets as of the call, through a new consumer group
    (``driftloop-report-<random>``) that commits nothing. A missing topic yields nothing."""
    try:
        event_log.partitions_for(topic)
    except EventLogError:
        return
    ends = {p: o for p, o in event_log.end_offsets(topic).items() if o > 0}
    if not ends:
        return
    consumer = event_log.consumer(f"driftloop-report-{uuid.uuid4().hex[:12]}", [topic])
    next_offset: dict[int, int] = {}
    deadline = clock() + timeout_s
    try:
        while any(next_offset.get(p, 0) < end for p, end in ends.items()):
            if clock() > deadline:
                read = sum(min(next_offset.get(p, 0), end) for p, end in ends.items())
                raise ReportError(
                    f"could not read {topic!r} to its end within {timeout_s:.0f} s ({read} of "
                    f"{sum(ends.values())} records): check the event log, or raise the timeout"
                )
            for record in consumer.poll(0.2, 2000):
                end = ends.get(record.partition)
                next_offset[record.partition] = max(next_offset.get(record.partition, 0), record.offset + 1)
                if end is not None and record.offset < end:
                    yield record
    finally:
        consumer.close()


def collect(
    event_log: EventLog,
    *,
    topics: ReportTopics | None = None,
    candidates: CandidateSource | None = None,
    model_name: str | None = None,
    deployment: str | None = None,
    dedupe_window: int = 10_000_000,
    timeout_s: float = 30.0,
) -> LoopRecords:
    """Everything the loop wrote so far. ``deployment`` (``<namespace>/<name>``) keeps only that
    deployment's rollout decisions; ``candidates`` with ``model_name`` reads the registered candidates."""
    topics = topics or ReportTopics()
    records = LoopRecords()
    deduper = LabelledDeduper(dedupe_window)
    for record in read_to_end(event_log, topics.labelled, timeout_s=timeout_s):
        try:
            examples = decode_labelled(record.value)
        except UndecodableRecord as exc:
            _skip(records, topics.labelled, exc)
            continue
        for example, fresh in zip(examples, deduper.first_seen(e.example_id for e in examples), strict=True):
            if fresh:
                records.examples.append(LoggedExample(example, record.timestamp_ms / 1000.0))
    records.duplicates = deduper.duplicates
    for record in read_to_end(event_log, topics.drift, timeout_s=timeout_s):
        try:
            records.drift.append(DriftVerdict.from_json(record.value))
        except (ValueError, TypeError) as exc:  # orjson's JSONDecodeError is a ValueError
            _skip(records, topics.drift, exc)
    for record in read_to_end(event_log, topics.rollouts, timeout_s=timeout_s):
        try:
            event = RolloutEvent.decode(record.value)
        except RolloutError as exc:
            _skip(records, topics.rollouts, exc)
            continue
        if deployment is None or event.deployment == deployment:
            records.rollouts.append(event)
    if candidates is not None:
        if model_name is None:
            raise ReportError("reading candidates needs the registered model's name (model_name=...)")
        records.candidates = read_candidates(candidates, model_name)
    return records


def _skip(records: LoopRecords, topic: str, exc: Exception) -> None:
    records.undecodable[topic] = records.undecodable.get(topic, 0) + 1
    log.warning("report: a record of %s does not decode, skipped (counted): %s", topic, exc)
