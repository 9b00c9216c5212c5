"""Prometheus counters of one event log: every record sent, refused or not acknowledged, every
record polled, every commit and failed commit, every record dropped by retention.

Each log owns an ``EventLogMetrics`` (its own registry unless given one), so several logs can live in
one process; a service exposing ``/metrics`` passes its registry:
``open_event_log(metrics=EventLogMetrics(registry))``.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from driftloop.eventlog.base import EventLogError, Record
from driftloop.eventlog.validation import InvalidRecordError, InvalidTopicError, RecordTooLargeError

_REASONS: tuple[tuple[type[EventLogError], str], ...] = (
    (InvalidTopicError, "invalid_topic"),
    (RecordTooLargeError, "too_large"),
    (InvalidRecordError, "invalid_record"),
)


class EventLogMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.records_sent = Counter(
            "driftloop_eventlog_records_sent",
            "Records acknowledged by the event log",
            ("backend", "topic"),
            registry=self.registry,
        )
        self.send_errors = Counter(
            "driftloop_eventlog_send_errors",
            "Records not written: refused before sending (invalid_topic, too_large, invalid_record, error) "
            "or sent but not acknowledged (not_acknowledged)",
            ("backend", "topic", "reason"),
            registry=self.registry,
        )
        self.records_polled = Counter(
            "driftloop_eventlog_records_polled",
            "Records returned to consumers by poll",
            ("backend", "group", "topic"),
            registry=self.registry,
        )
        self.commits = Counter(
            "driftloop_eventlog_commits",
            "Offset commits, by outcome (ok, rebalanced, error)",
            ("backend", "group", "outcome"),
            registry=self.registry,
        )
        self.records_expired = Counter(
            "driftloop_eventlog_records_expired",
            "Records deleted by the embedded log's retention (age or size)",
            ("topic",),
            registry=self.registry,
        )

    def refused(self, backend: str, topic: object, error: EventLogError) -> None:
        reason = next((name for kind, name in _REASONS if isinstance(error, kind)), "error")
        label = "<invalid>" if isinstance(error, InvalidTopicError) or not isinstance(topic, str) else topic
        self.send_errors.labels(backend, label, reason).inc()

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter (``name`` without ``_total``); 0 when never incremented."""
        found = self.registry.get_sample_value(f"{name}_total", labels)
        return 0.0 if found is None else found

    def polled(self, backend: str, group: str, records: Sequence[Record]) -> None:
        counts: dict[str, int] = {}
        for record in records:
            counts[record.topic] = counts.get(record.topic, 0) + 1
        for topic, count in counts.items():
            self.records_polled.labels(backend, group, topic).inc(count)

    def polled_count(self, backend: str, group: str, topic: str, count: int) -> None:
        if count:
            self.records_polled.labels(backend, group, topic).inc(count)

    def commit(self, backend: str, group: str, outcome: str) -> None:
        self.commits.labels(backend, group, outcome).inc()
