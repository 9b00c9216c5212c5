"""The embedded event log: Kafka's semantics in one SQLite file on local disk, no broker.

The default when no Kafka bootstrap servers are configured. Several processes of one machine (the local
runtime, the feedback service, the trainer) open the same directory and share topics, consumer groups
and committed offsets. A send returns once its transaction has committed: that is "acknowledged", and
an acknowledged record survives ``kill -9`` of any process. Keyed records go to the partition Kafka's
default partitioner would choose (murmur2); keyless ones round-robin. Retention drops the oldest records
of a partition by age and by size, always as a prefix, so offsets stay contiguous from ``log_start``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from driftloop.eventlog.base import EventLogError, RecordMetadata
from driftloop.eventlog.delivery import CompletedDelivery
from driftloop.eventlog.embedded_consumer import EmbeddedConsumer
from driftloop.eventlog.metrics import EventLogMetrics
from driftloop.eventlog.partitioner import RoundRobin, partition_for_key
from driftloop.eventlog.settings import EmbeddedSettings
from driftloop.eventlog.sqlite_store import Store, encode_headers, ensure_topic, instance_id
from driftloop.eventlog.validation import (
    check_auto_offset_reset,
    check_group_id,
    check_many,
    check_partitions,
    check_record,
    check_topic,
    check_topics,
)

Clock = Callable[[], float]


class EmbeddedEventLog:
    """The log stored in ``directory`` (``eventlog.db`` + its WAL). ``clock`` returns unix seconds."""

    backend = "embedded"

    def __init__(
        self,
        directory: Path,
        settings: EmbeddedSettings | None = None,
        *,
        clock: Clock = time.time,
        fsync: bool = False,
        metrics: EventLogMetrics | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.metrics = metrics or EventLogMetrics()
        self.settings = settings or EmbeddedSettings()
        self.clock = clock
        self.fsync = fsync
        self._store = self.open_store()
        self._clients: list[EmbeddedProducer | EmbeddedConsumer] = []  # closed with the log

    def identity(self) -> str:
        """``embedded:<resolved directory>#<instance id>``: a copy of the directory elsewhere, or a log
        deleted and created again at the same path, is another log."""
        with self._store.lock:
            instance = instance_id(self._store.conn)
        return f"embedded:{self.directory.resolve()}#{instance}"

    def open_store(self) -> Store:
        return Store(self.directory, busy_timeout_s=self.settings.busy_timeout_s, fsync=self.fsync)

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        check_topic(topic)
        check_partitions(topic, partitions)
        with self._store.write() as conn:
            ensure_topic(conn, topic, partitions)

    def partitions_for(self, topic: str) -> int:
        check_topic(topic)
        with self._store.lock:
            row = self._store.conn.execute(
                "SELECT partitions FROM topics WHERE name = ?", (topic,)
            ).fetchone()
        if row is None:
            raise EventLogError(f"topic {topic!r} does not exist in {self.directory}; create it first")
        return int(row[0])

    def end_offsets(self, topic: str) -> dict[int, int]:
        check_topic(topic)
        with self._store.lock:
            rows = self._store.conn.execute(
                "SELECT partition, next_offset FROM partitions WHERE topic = ? ORDER BY partition", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def beginning_offsets(self, topic: str) -> dict[int, int]:
        """The first offset still stored per partition (above 0 once retention has dropped records)."""
        check_topic(topic)
        with self._store.lock:
            rows = self._store.conn.execute(
                "SELECT partition, log_start FROM partitions WHERE topic = ? ORDER BY partition", (topic,)
            ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def producer(self) -> EmbeddedProducer:
        producer = EmbeddedProducer(self)
        self._clients.append(producer)
        return producer

    def consumer(
        self, group_id: str, topics: Sequence[str], *, auto_offset_reset: str = "earliest"
    ) -> EmbeddedConsumer:
        check_group_id(group_id)
        topics = check_topics(topics)
        check_auto_offset_reset(auto_offset_reset)
        consumer = EmbeddedConsumer(self, group_id, tuple(topics), auto_offset_reset)
        self._clients.append(consumer)
        return consumer

    def enforce_retention(self) -> int:
        """Drop records past ``retention_s`` / above ``retention_bytes`` per partition; return how many."""
        return enforce_retention(self._store, self.settings, self.clock, self.metrics)

    def close(self) -> None:
        """Close the log and every producer and consumer opened from it (consumers leave their group)."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._store.close()


class EmbeddedProducer:
    """Each ``send`` is one committed transaction: when it returns, the record is acknowledged."""

    def __init__(self, log: EmbeddedEventLog) -> None:
        self._log = log
        self._store = log.open_store()
        self._round_robin = RoundRobin()
        self._partitions: dict[str, int] = {}
        self._next_retention = log.clock() + log.settings.retention_check_s
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
        try:
            value_b, key_b, headers_n = check_record(
                topic, value, key, headers, self._log.settings.max_message_bytes
            )
            meta = self._write(topic, value_b, key_b, headers_n, partition, timestamp_ms)
        except EventLogError as exc:
            self._log.metrics.refused(self._log.backend, topic, exc)
            raise
        self._log.metrics.records_sent.labels(self._log.backend, topic).inc()
        return CompletedDelivery(meta)

    def _write(
        self,
        topic: str,
        value_b: bytes,
        key_b: bytes | None,
        headers_n: tuple[tuple[str, bytes], ...],
        partition: int | None,
        timestamp_ms: int | None,
    ) -> RecordMetadata:
        blob = encode_headers(headers_n)
        size = len(value_b) + len(key_b or b"") + len(blob)
        now = self._log.clock()
        stamp = int(now * 1000) if timestamp_ms is None else int(timestamp_ms)
        try:
            with self._store.write() as conn:
                count = self._partition_count(conn, topic)
                if partition is None:
                    partition = (
                        partition_for_key(key_b, count)
                        if key_b is not None
                        else self._round_robin.next(count)
                    )
                offset = self._append(
                    conn, topic, partition, count, [(key_b, value_b, blob, size, stamp)], size
                )
        except sqlite3.Error as exc:
            raise EventLogError(f"send to topic {topic!r} in {self._log.directory} failed: {exc}") from exc
        self._retain(now)
        return RecordMetadata(topic, partition, int(offset), stamp)

    def send_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        partition: int,
        headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
        timestamps_ms: Sequence[int | None] | None = None,
    ) -> None:
        """Append many (key, value) records to one partition in ONE transaction: all of them are
        acknowledged together when it returns, or none is (a per-record ``send`` commits each: ~50 us
        of CPU per record, most of it the commit)."""
        if self._closed:
            raise EventLogError("producer is closed; create a new one with EventLog.producer()")
        if not records:
            return
        limit = self._log.settings.max_message_bytes
        try:
            check_many(topic, records, headers, timestamps_ms, limit)
            now = self._log.clock()
            rows = []
            total = 0
            for i, (key, value) in enumerate(records):
                blob = encode_headers(headers[i]) if headers is not None else b""
                size = len(value) + len(key or b"") + len(blob)
                stamp = timestamps_ms[i] if timestamps_ms is not None else None
                rows.append((key, bytes(value), blob, size, int(now * 1000) if stamp is None else int(stamp)))
                total += size
            self._write_many(topic, partition, rows, total)
        except EventLogError as exc:
            self._log.metrics.refused(self._log.backend, topic, exc)
            raise
        self._log.metrics.records_sent.labels(self._log.backend, topic).inc(len(records))
        self._retain(now)

    def _write_many(
        self, topic: str, partition: int, rows: list[tuple[bytes | None, bytes, bytes, int, int]], total: int
    ) -> None:
        try:
            with self._store.write() as conn:
                self._append(conn, topic, partition, self._partition_count(conn, topic), rows, total)
        except sqlite3.Error as exc:
            raise EventLogError(f"send to topic {topic!r} in {self._log.directory} failed: {exc}") from exc

    def _partition_count(self, conn: sqlite3.Connection, topic: str) -> int:
        count = self._partitions.get(topic) or ensure_topic(conn, topic, 1)
        self._partitions[topic] = count
        return count

    @staticmethod
    def _append(
        conn: sqlite3.Connection,
        topic: str,
        partition: int,
        count: int,
        rows: list[tuple[bytes | None, bytes, bytes, int, int]],
        total: int,
    ) -> int:
        """Append (key, value, headers blob, size, timestamp) rows to one partition (inside the
        caller's write transaction); the first row's offset."""
        if not 0 <= partition < count:
            raise EventLogError(
                f"topic {topic!r} has {count} partition(s); partition {partition} does not exist"
            )
        (first,) = conn.execute(
            "UPDATE partitions SET next_offset = next_offset + ?, bytes = bytes + ? "
            "WHERE topic = ? AND partition = ? RETURNING next_offset - ?",
            (len(rows), total, topic, partition, len(rows)),
        ).fetchone()
        conn.executemany(
            "INSERT INTO records(topic, partition, offset, timestamp_ms, key, value, headers, size) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (topic, partition, first + i, stamp, key, value, blob, size)
                for i, (key, value, blob, size, stamp) in enumerate(rows)
            ],
        )
        return int(first)

    def _retain(self, now: float) -> None:
        if now >= self._next_retention:
            self._next_retention = now + self._log.settings.retention_check_s
            enforce_retention(self._store, self._log.settings, self._log.clock, self._log.metrics)

    def flush(self, timeout_s: float | None = None) -> None:
        return None  # every send is already committed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._store.close()


def enforce_retention(
    store: Store, settings: EmbeddedSettings, clock: Clock, metrics: EventLogMetrics | None = None
) -> int:
    """Delete a prefix of each partition: records older than the age limit, then the oldest records
    while the partition holds more than the size limit. Return the number of records deleted."""
    deleted = 0
    with store.write() as conn:
        parts = conn.execute(
            "SELECT topic, partition, log_start, next_offset, bytes FROM partitions"
        ).fetchall()
        for topic, partition, log_start, next_offset, size in parts:
            cut = log_start
            if settings.retention_s is not None:
                cutoff_ms = int((clock() - settings.retention_s) * 1000)
                row = conn.execute(
                    "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ? AND timestamp_ms >= ?",
                    (topic, partition, cutoff_ms),
                ).fetchone()
                cut = max(cut, next_offset if row[0] is None else int(row[0]))
            if settings.retention_bytes is not None and size > settings.retention_bytes:
                row = conn.execute(
                    "SELECT offset FROM (SELECT offset, SUM(size) OVER (ORDER BY offset DESC) AS tail "
                    "FROM records WHERE topic = ? AND partition = ?) "
                    "WHERE tail > ? ORDER BY offset DESC LIMIT 1",
                    (topic, partition, settings.retention_bytes),
                ).fetchone()
                if row is not None:
                    cut = max(cut, int(row[0]) + 1)
            if cut > log_start:
                removed = conn.execute(
                    "DELETE FROM records WHERE topic = ? AND partition = ? AND offset < ?",
                    (topic, partition, cut),
                ).rowcount
                deleted += removed
                if metrics is not None:
                    metrics.records_expired.labels(topic).inc(removed)
                conn.execute(
                    "UPDATE partitions SET log_start = ?, bytes = "
                    "(SELECT COALESCE(SUM(size), 0) FROM records WHERE topic = ? AND partition = ?) "
                    "WHERE topic = ? AND partition = ?",
                    (cut, topic, partition, topic, partition),
                )
    return deleted
