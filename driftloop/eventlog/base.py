"""The event-log port. Kafka semantics: topics of partitions of ordered records; keys choose the
partition; consumer groups split partitions between members; offsets are committed explicitly
(at-least-once: commit only what has been processed).

Offsets follow Kafka's convention: a committed offset is the *next* offset to read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from driftloop.errors import DriftloopError

Header = tuple[str, bytes]


class EventLogError(DriftloopError):
    """An event-log operation failed; the message names the topic/broker and what to check."""


@dataclass(frozen=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True)
class RecordMetadata:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class Record(NamedTuple):
    """One consumed record. A named tuple rather than a frozen dataclass: consumers build one per
    record polled, and a tuple is several times cheaper to make (the joiner polls 100k+ per second)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: tuple[Header, ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Delivery(Protocol):
    """The outcome of one send; ``get`` blocks until the log acknowledged it (or raises)."""

    def get(self, timeout_s: float | None = None) -> RecordMetadata: ...


@runtime_checkable
class Producer(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | str]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Delivery:
        """Queue one record. The record is acknowledged (durable) once ``Delivery.get`` returns."""
        ...

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every queued record is acknowledged; raise if any failed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Consumer(Protocol):
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        """Records from the assigned, unpaused partitions, in offset order per partition."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit next-offsets-to-read; ``None`` commits everything returned by ``poll`` so far."""
        ...

    def committed(self, tp: TopicPartition) -> int | None: ...

    def seek(self, tp: TopicPartition, offset: int) -> None: ...

    def seek_to_time(self, timestamp_ms: int) -> None:
        """Move every assigned partition to the first record at or after ``timestamp_ms``."""
        ...

    def assignment(self) -> set[TopicPartition]: ...

    def pause(self, tps: Iterable[TopicPartition]) -> None: ...

    def resume(self, tps: Iterable[TopicPartition]) -> None: ...

    def lag(self) -> dict[TopicPartition, int]:
        """End offset minus committed offset (or minus 0 when nothing is committed) per assigned partition."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EventLog(Protocol):
    """A connection to one log (a Kafka cluster or an embedded log directory)."""

    def identity(self) -> str:
        """Which log this is, the same from every connection to it and across restarts, different for
        any other log: ``kafka:cluster=<cluster id>``, ``embedded:<resolved directory>#<instance id>``
        (the id is drawn once, when the log's database is created), ``memory:<random id>``. State
        kept outside the log that refers to its offsets (the joiner's snapshots) records it, so that it
        is never applied to another log's offsets."""
        ...

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        """Create ``topic`` if absent (idempotent); an existing topic keeps its partition count."""
        ...

    def partitions_for(self, topic: str) -> int: ...

    def end_offsets(self, topic: str) -> dict[int, int]: ...

    def producer(self) -> Producer: ...

    def consumer(
        self,
        group_id: str,
        topics: Sequence[str],
        *,
        auto_offset_reset: str = "earliest",
    ) -> Consumer:
        """A group member subscribed to ``topics``; partitions are assigned and rebalanced by the group."""
        ...

    def close(self) -> None: ...
