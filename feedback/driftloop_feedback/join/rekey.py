"""The re-keying stage: Seldon's logger writes the request log with no key, so a request's events
can land on any partition. This stateless stage copies every event, value and headers unchanged, to
the keyed request log with key = request id, so the request join sees all events of a request (and
the truth posted for it, keyed the same way) on one partition. At-least-once: it commits only what it
has flushed; a copy repeated after a crash is a duplicate event the join drops."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from driftloop_feedback.join.settings import JoinerSettings

from driftloop.eventlog import (
    CommitFailedError,
    EventLog,
    Header,
    TopicPartition,
    partition_for_key,
    send_many,
)
from driftloop.seldon_log import H_REQUEST_ID

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class RekeyStage:
    name = "rekey"
    active = True

    def __init__(self, log_: EventLog, settings: JoinerSettings, *, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.unflushed = 0
        self._last_commit = clock()
        self._last_lag = float("-inf")
        self.group_id = f"{settings.group_id}-rekey"
        self.consumer = log_.consumer(self.group_id, [settings.request_log_topic])
        self.producer = log_.producer()
        self.partitions = log_.partitions_for(settings.keyed_log_topic)
        self.copied = 0
        self.malformed = 0
        self.lag: dict[TopicPartition, int] = {}

    def step(self, poll_timeout_s: float = 0.2) -> int:
        records = self.consumer.poll(poll_timeout_s, self.settings.poll_max_records)
        # Grouped by target partition (Kafka's default partitioner on the request id), one bulk send each.
        out: dict[int, tuple[list[tuple[bytes | None, bytes]], list[Sequence[Header]], list[int | None]]] = {}
        # A call logs several events with one request id: its partition is computed once per poll.
        partitions: dict[bytes, int] = {}
        for record in records:
            request_id = record.header(H_REQUEST_ID)
            if not request_id:
                self.malformed += 1
                log.warning("rekey: %s@%d has no requestid header; skipped", record.tp, record.offset)
                continue
            p = partitions.get(request_id, -1)
            if p < 0:
                p = partitions[request_id] = partition_for_key(request_id, self.partitions)
            part = out.get(p)
            if part is None:
                part = out[p] = ([], [], [])
            part[0].append((request_id, record.value))
            part[1].append(record.headers)
            part[2].append(record.timestamp_ms)
        topic = self.settings.keyed_log_topic
        for p, (pairs, headers, stamps) in out.items():
            send_many(self.producer, topic, pairs, partition=p, headers=headers, timestamps_ms=stamps)
            self.copied += len(pairs)
            self.unflushed += len(pairs)
        due = self.clock() - self._last_commit >= self.settings.checkpoint_interval_s
        if self.unflushed >= self.settings.max_in_flight or due:
            self.checkpoint()
        return len(records)

    def checkpoint(self) -> None:
        """Flush the copies, then commit what was copied (never the other way round)."""
        if self.unflushed:
            self.producer.flush()
            try:
                self.consumer.commit()
            except CommitFailedError as exc:
                log.warning("rekey: %s", exc)
        self.unflushed = 0
        now = self.clock()
        if now - self._last_lag >= self.settings.lag_interval_s:
            self._last_lag = now  # lag costs requests to the log: at most once per interval
            self.lag = self.consumer.lag()
        self._last_commit = now

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()
        self.checkpoint()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
