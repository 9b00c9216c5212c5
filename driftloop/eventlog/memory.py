"""An in-memory event log for fast unit tests: thread-safe, the same semantics as Kafka and the
embedded log (murmur2 key partitioning, range-assigned consumer groups, explicit commits, lag), and
nothing on disk. Every ``MemoryEventLog`` instance is its own isolated log.

>>> log = MemoryEventLog()
>>> log.create_topic("driftloop.feedback", partitions=2)
>>> producer = log.producer()
>>> producer.send("driftloop.feedback", b'{"y": 1.0}', key=b"req-1").get().offset
0
>>> consumer = log.consumer("joiner", ["driftloop.feedback"])
>>> [r.value for r in consumer.poll(timeout_s=0)]
[b'{"y": 1.0}']
>>> consumer.commit()
>>> consumer.lag()[TopicPartition("driftloop.feedback", 1)]
0
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from driftloop.eventlog.assignment import range_assign
from driftloop.eventlog.base import EventLogError, Record, RecordMetadata, TopicPartition
from driftloop.eventlog.delivery import CommitFailedError, CompletedDelivery
from driftloop.eventlog.metrics import EventLogMetrics
from driftloop.eventlog.partitioner import RoundRobin, partition_for_key
from driftloop.eventlog.validation import (
    DEFAULT_MAX_MESSAGE_BYTES,
    check_auto_offset_reset,
    check_group_id,
    check_partitions,
    check_record,
    check_topic,
    check_topics,
)

Clock = Callable[[], float]


@dataclass
class _Group:
    members: dict[str, tuple[str, ...]] = field(default_factory=dict)
    generation: int = 0
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class MemoryEventLog:
    """One isolated in-memory log. ``clock`` (seconds) stamps records that carry no timestamp."""

    backend = "memory"

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        metrics: EventLogMetrics | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics or EventLogMetrics()
        self.max_message_bytes = max_message_bytes
        self._cond = threading.Condition()
        self._topics: dict[str, list[list[Record]]] = {}
        self._groups: dict[str, _Group] = {}
        self._topology = 0
        self._member_ids = itertools.count()
        self._identity = f"memory:{uuid.uuid4().hex}"

    # -- EventLog -----------------------------------------------------------------------------
    def create_topic(self, topic: str, partitions: int = 1) -> None:
        check_topic(topic)
        check_partitions(topic, partitions)
        with self._cond:
            self._create(topic, partitions)

    def partitions_for(self, topic: str) -> int:
        check_topic(topic)
        with self._cond:
            if topic not in self._topics:
                raise EventLogError(f"topic {topic!r} does not exist; create it with create_topic()")
            return len(self._topics[topic])

    def end_offsets(self, topic: str) -> dict[int, int]:
        check_topic(topic)
        with self._cond:
            return {p: len(records) for p, records in enumerate(self._topics.get(topic, []))}

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)

    def consumer(
        self, group_id: str, topics: Sequence[str], *, auto_offset_reset: str = "earliest"
    ) -> MemoryConsumer:
        check_group_id(group_id)
        topics = check_topics(topics)
        check_auto_offset_reset(auto_offset_reset)
        with self._cond:
            member = f"member-{next(self._member_ids):06d}"
            group = self._groups.setdefault(group_id, _Group())
            group.members[member] = tuple(topics)
            group.generation += 1
        return MemoryConsumer(self, group_id, member, tuple(topics), auto_offset_reset)

    def identity(self) -> str:
        """``memory:<random id>``, drawn when this log was made: every instance is another log."""
        return self._identity

    def close(self) -> None:
        return None

    # -- internals (callers hold self._cond) ----------------------------------------------------
    def _create(self, topic: str, partitions: int) -> list[list[Record]]:
        if topic not in self._topics:
            self._topics[topic] = [[] for _ in range(partitions)]
            self._topology += 1
        return self._topics[topic]

    def _append(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: tuple[tuple[str, bytes], ...],
        partition: int | None,
        timestamp_ms: int | None,
        round_robin: RoundRobin,
    ) -> RecordMetadata:
        with self._cond:
            parts = self._create(topic, 1)  # auto-create with one partition, like Kafka's broker default
            if partition is None:
                count = len(parts)
                partition = partition_for_key(key, count) if key is not None else round_robin.next(count)
            elif not 0 <= partition < len(parts):
                raise EventLogError(
                    f"topic {topic!r} has {len(parts)} partition(s); partition {partition} does not exist"
                )
            stamp = int(self.clock() * 1000) if timestamp_ms is None else int(timestamp_ms)
            offset = len(parts[partition])
            parts[partition].append(Record(topic, partition, offset, stamp, key, value, headers))
            self._cond.notify_all()
            return RecordMetadata(topic, partition, offset, stamp)


class MemoryProducer:
    def __init__(self, log: MemoryEventLog) -> None:
        self._log = log
        self._round_robin = RoundRobin()
        self._closed = False

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | str]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> CompletedDelivery:
        if self._closed:
            raise EventLogError("producer is closed; create a new one with EventLog.producer()")
        metrics = self._log.metrics
        try:
            value_b, key_b, headers_n = check_record(topic, value, key, headers, self._log.max_message_bytes)
            meta = self._log._append(
                topic, value_b, key_b, headers_n, partition, timestamp_ms, self._round_robin
            )
        except EventLogError as exc:
            metrics.refused(self._log.backend, topic, exc)
            raise
        metrics.records_sent.labels(self._log.backend, topic).inc()
        return CompletedDelivery(meta)

    def flush(self, timeout_s: float | None = None) -> None:
        return None

    def close(self) -> None:
        self._closed = True


class MemoryConsumer:
    def __init__(
        self, log: MemoryEventLog, group_id: str, member: str, topics: tuple[str, ...], reset: str
    ) -> None:
        self._log = log
        self.group_id = group_id
        self.member_id = member
        self._topics = topics
        self._reset = reset
        self._seen: tuple[int, int] = (-1, -1)
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._closed = False

    @property
    def _group(self) -> _Group:
        return self._log._groups[self.group_id]

    def _sync(self) -> None:
        """Learn the current assignment (caller holds the log's lock)."""
        if self._closed:
            raise EventLogError(f"consumer of group {self.group_id!r} is closed")
        group = self._group
        state = (group.generation, self._log._topology)
        if state == self._seen:
            return
        counts = {t: len(self._log._topics[t]) for t in self._topics if t in self._log._topics}
        mine = range_assign(group.members, counts)[self.member_id]
        for tp in mine - self._assigned:
            self._positions[tp] = self._start_offset(tp)
        for tp in self._assigned - mine:
            self._positions.pop(tp, None)
        self._assigned = mine
        self._paused &= mine
        self._seen = state

    def _start_offset(self, tp: TopicPartition) -> int:
        committed = self._group.committed.get(tp)
        if committed is not None:
            return committed
        return 0 if self._reset == "earliest" else len(self._log._topics[tp.topic][tp.partition])

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._log._cond:
            while True:
                self._sync()
                out: list[Record] = []
                for tp in sorted(self._assigned - self._paused):
                    records = self._log._topics[tp.topic][tp.partition]
                    position = self._positions[tp]
                    batch = records[position : position + max_records - len(out)]
                    out.extend(batch)
                    self._positions[tp] = position + len(batch)
                    if len(out) >= max_records:
                        break
                remaining = deadline - time.monotonic()
                if out or remaining <= 0:
                    self._log.metrics.polled(self._log.backend, self.group_id, out)
                    return out
                self._log._cond.wait(min(remaining, 0.05))

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        with self._log._cond:
            # positions before the sync: what this consumer has returned, even from revoked partitions
            wanted = dict(self._positions) if offsets is None else dict(offsets)
            self._sync()
            revoked = sorted(tp for tp in wanted if tp not in self._assigned)
            for tp, offset in wanted.items():
                if tp in self._assigned:
                    self._group.committed[tp] = int(offset)
        self._log.metrics.commit(self._log.backend, self.group_id, "rebalanced" if revoked else "ok")
        if revoked:
            raise CommitFailedError(
                f"group {self.group_id!r} rebalanced: {revoked} are no longer assigned to this consumer, "
                "so their offsets were not committed; the new owner re-reads them (at-least-once). "
                "Poll again and carry on."
            )

    def committed(self, tp: TopicPartition) -> int | None:
        with self._log._cond:
            return self._group.committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        with self._log._cond:
            self._require_assigned(tp)
            if offset < 0:
                raise EventLogError(f"cannot seek {tp} to negative offset {offset}")
            self._positions[tp] = offset

    def seek_to_time(self, timestamp_ms: int) -> None:
        with self._log._cond:
            self._sync()
            for tp in self._assigned:
                records = self._log._topics[tp.topic][tp.partition]
                # Kafka semantics: the earliest offset whose timestamp is >= the target (timestamps
                # may be out of order when producers set them, so scan rather than bisect).
                self._positions[tp] = next(
                    (r.offset for r in records if r.timestamp_ms >= timestamp_ms), len(records)
                )

    def position(self, tp: TopicPartition) -> int:
        with self._log._cond:
            self._require_assigned(tp)
            return self._positions[tp]

    def assignment(self) -> set[TopicPartition]:
        with self._log._cond:
            self._sync()
            return set(self._assigned)

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        with self._log._cond:
            for tp in tps:
                self._require_assigned(tp)
                self._paused.add(tp)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        with self._log._cond:
            self._paused.difference_update(tps)

    def lag(self) -> dict[TopicPartition, int]:
        with self._log._cond:
            self._sync()
            return {
                tp: len(self._log._topics[tp.topic][tp.partition]) - (self._group.committed.get(tp) or 0)
                for tp in self._assigned
            }

    def close(self) -> None:
        with self._log._cond:
            if self._closed:
                return
            self._closed = True
            group = self._group
            group.members.pop(self.member_id, None)
            group.generation += 1
            self._log._cond.notify_all()

    def _require_assigned(self, tp: TopicPartition) -> None:
        self._sync()
        if tp not in self._assigned:
            raise EventLogError(
                f"{tp} is not assigned to this consumer of group {self.group_id!r} "
                f"(assigned: {sorted(self._assigned)}); poll first so the group assigns partitions"
            )
