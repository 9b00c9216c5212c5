"""The labelled topic as the validator worker reads it, and which of its rows pair up for the test.

``LabelledStream`` owns the consumer (opened once the topic exists, in the worker's group), seeks newly
assigned partitions to the offsets of the state, reads each ``example_id`` once (the state's
``LabelledDeduper``; a record is one example or a batch of them) and keeps the **fresh** rows of the run
in progress, not fed yet (``take_rows``): rows the challenger cannot have trained on (its ``TrainingWindow``)
whose features and truth both models can be scored on. Every row read is kept or counted as skipped,
with its reason (``gauges.count_skipped``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from driftloop.eventlog import CommitFailedError, Consumer, EventLog, EventLogError, Record, TopicPartition
from driftloop_feedback.records import LabelledExample, UndecodableRecord
from driftloop_feedback.validate.gauges import count_skipped
from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.settings import ValidatorSettings
from driftloop_feedback.validate.state import ValidatorState
from driftloop_feedback.validate.status_line import StatusLine
from driftloop_feedback.validate.validator import Validator
from driftloop_feedback.validate.worker_log import log


class LabelledStream:
    def __init__(
        self, log_: EventLog, settings: ValidatorSettings, metrics: ValidatorMetrics, status: StatusLine
    ) -> None:
        self.log = log_
        self.settings = settings
        self.metrics = metrics
        self.status = status
        self.state: ValidatorState | None = None  # the worker's, once loaded: offsets, deduper, run
        self.consumer: Consumer | None = None
        self._rows: list[LabelledExample] = []  # fresh rows of the run, not fed yet
        self._assigned: set[TopicPartition] = set()
        self._topic_due = 0.0

    def open(self, now: float) -> bool:
        """Open the consumer once the topic exists (looked for again every ``topic_retry_s``)."""
        topic = self.settings.labelled_topic
        if now < self._topic_due:
            return False
        try:
            self.log.partitions_for(topic)
        except EventLogError:
            self._topic_due = now + self.settings.topic_retry_s
            self.metrics.waiting.labels("topic").set(1)
            self.status.say("topic", f"waiting: no labelled topic {topic!r} yet (the joiner creates it)")
            return False
        self.metrics.waiting.labels("topic").set(0)
        self.status.say("topic", f"reading {topic!r} as group {self.settings.group_id!r}")
        self.consumer = self.log.consumer(self.settings.group_id, [topic])
        return True

    def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset (for a state without source); opens the consumer early."""
        if self.consumer is None:
            try:
                self.log.partitions_for(self.settings.labelled_topic)
            except EventLogError:
                return None
            self.consumer = self.log.consumer(self.settings.group_id, [self.settings.labelled_topic])
        return self.consumer.committed(tp)

    def read(self) -> int:
        """Poll once; take every record not read yet into the state. Returns the records taken."""
        assert self.consumer is not None
        records = self._sync(self.consumer.poll(self.settings.poll_timeout_s, self.settings.poll_max_records))
        for record in records:
            self._take(record)
        return len(records)

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit the saved offsets of the partitions this consumer owns (after the state is written)."""
        owned = {tp: o for tp, o in offsets.items() if tp in self._assigned}
        if self.consumer is not None and owned:
            try:
                self.consumer.commit(owned)
            except CommitFailedError as exc:  # a rebalance: the state file still holds the offsets
                log.warning("validator: offset commit failed (%s); the next save commits", exc)

    def take_rows(self) -> list[LabelledExample]:
        """The fresh rows read since the last call (to be fed to the run in progress)."""
        rows, self._rows = self._rows, []
        return rows

    def has_rows(self) -> bool:
        return bool(self._rows)

    def clear_rows(self) -> None:
        self._rows.clear()

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.consumer = None

    def _sync(self, records: list[Record]) -> list[Record]:
        """Seek newly assigned partitions to the saved offsets; drop records already read."""
        assert self.consumer is not None and self.state is not None
        offsets = self.state.offsets
        owned = self.consumer.assignment()
        seeked: set[TopicPartition] = set()
        for tp in owned - self._assigned:
            if tp in offsets:
                self.consumer.seek(tp, offsets[tp])
                seeked.add(tp)
        self._assigned = set(owned)
        return [
            r for r in records if r.tp not in seeked and r.tp in owned and r.offset >= offsets.get(r.tp, 0)
        ]

    def _take(self, record: Record) -> None:
        state = self.state
        assert state is not None
        state.offsets[record.tp] = record.offset + 1
        before = state.deduper.duplicates
        try:
            examples = list(state.deduper.feed([record.value]))
        except UndecodableRecord as exc:
            self.metrics.read.inc()
            self._skip("undecodable")
            log.warning("validator: labelled record %s@%d undecodable: %s", record.tp, record.offset, exc)
            return
        duplicates = state.deduper.duplicates - before
        self.metrics.read.inc(len(examples) + duplicates)  # rows: each example of a batch record
        if duplicates:
            self._skip("duplicate", duplicates)
        run = state.run
        for example in examples:  # one, or the examples of a batch record (``labelled_batch``)
            if run is None:
                self._skip("idle")
            elif run.window.trained_on(record.tp, record.offset, example.event_time):
                self._skip("trained_on")
            elif not _usable_features(
                example.features, getattr(run.validator.champion, "n_features_in_", None)
            ):
                self._skip("features")
            elif not _usable_truth(run.validator, example.truth):
                self._skip("truth")
            else:
                self._rows.append(example)

    def _skip(self, reason: str, count: int = 1) -> None:
        count_skipped(self.metrics, self.state, reason, count)


def _usable_features(features: tuple[float, ...], n_features: int | None) -> bool:
    if n_features is not None and len(features) != n_features:
        return False
    try:
        return bool(np.isfinite(np.asarray(features, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return False


def _usable_truth(validator: Validator, truth: Any) -> bool:
    """A regression loss needs a finite number; a classification loss a label of the classes' type."""
    if validator.loss.name in ("absolute", "squared"):
        return isinstance(truth, float) and math.isfinite(truth)
    classes = getattr(validator.champion, "classes_", None)
    if classes is None or len(classes) == 0:
        return True
    numeric = np.issubdtype(np.asarray(classes).dtype, np.number)
    if numeric:
        return isinstance(truth, float) and math.isfinite(truth)
    return isinstance(truth, str)
