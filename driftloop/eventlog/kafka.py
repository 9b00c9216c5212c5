"""The event log on Apache Kafka, with kafka-python 3.0.

Producers use ``acks=all``, unbounded retries within ``delivery_timeout_s`` and idempotence, so a
record is acknowledged once every in-sync replica has it and a retry never duplicates it. Consumers
never auto-commit: ``commit`` stores only what the caller says it has processed (at-least-once).
A broker that cannot be reached fails fast (``connect_timeout_s``) with an error that names it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import kafka
import kafka.errors as kerrors
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_compat
from driftloop.eventlog.base import EventLogError, Record, RecordMetadata, TopicPartition
from driftloop.eventlog.delivery import CommitFailedError
from driftloop.eventlog.settings import KafkaSettings
from driftloop.eventlog.validation import (
    check_auto_offset_reset,
    check_group_id,
    check_partitions,
    check_record,
    check_topic,
)

kafka_compat.install()  # close sockets of failed connection attempts (kafka-python 3.0 leaks them)

T = TypeVar("T")
_REBALANCED = (
    kerrors.CommitFailedError,
    kerrors.RebalanceInProgressError,
    kerrors.IllegalGenerationError,
    kerrors.UnknownMemberIdError,
)


class KafkaEventLog:
    """A connection to one Kafka cluster. Opening it checks the brokers are reachable."""

    def __init__(self, bootstrap_servers: str, settings: KafkaSettings | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.settings = settings or KafkaSettings()
        self._config = {"bootstrap_servers": bootstrap_servers.split(","), **self.settings.client_config()}
        self._admin = self._connect(lambda: kafka.KafkaAdminClient(**self._config))
        self._offsets: kafka.KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._clients: list[KafkaProducer | KafkaConsumer] = []  # closed with the log

    def _connect(self, make: Callable[[], T]) -> T:
        try:
            return make()
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"cannot reach Kafka at {self.bootstrap_servers} within "
                f"{self.settings.connect_timeout_s:g} s "
                f"({type(exc).__name__}: {exc}). Check that the broker is running and reachable from here, "
                "that DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS names its advertised listener, and that "
                f"DRIFTLOOP_KAFKA_SECURITY_PROTOCOL ({self.settings.security_protocol}) and the TLS/SASL "
                "settings match the listener (unset DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS to use the "
                "embedded log)"
            ) from exc

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        check_topic(topic)
        check_partitions(topic, partitions)
        spec = {"num_partitions": partitions, "replication_factor": self.settings.replication_factor}
        try:
            self._admin.create_topics({topic: spec}, wait_for_metadata=True)
        except kerrors.TopicAlreadyExistsError:
            pass
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"creating topic {topic!r} on {self.bootstrap_servers} failed: {exc}"
            ) from exc

    def partitions_for(self, topic: str) -> int:
        check_topic(topic)
        try:
            (meta,) = self._admin.describe_topics([topic])
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"describing topic {topic!r} on {self.bootstrap_servers} failed: {exc}"
            ) from exc
        if meta.get("error_code", 0) != 0 or not meta.get("partitions"):
            raise EventLogError(
                f"topic {topic!r} does not exist on {self.bootstrap_servers}; create it first"
            )
        return len(meta["partitions"])

    def end_offsets(self, topic: str) -> dict[int, int]:
        count = self.partitions_for(topic)
        with self._lock:
            if self._offsets is None:
                self._offsets = self._connect(lambda: kafka.KafkaConsumer(group_id=None, **self._config))
            ends = self._offsets.end_offsets([KafkaTP(topic, p) for p in range(count)])
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def producer(self) -> KafkaProducer:
        producer = KafkaProducer(self)
        self._clients.append(producer)
        return producer

    def consumer(
        self, group_id: str, topics: Sequence[str], *, auto_offset_reset: str = "earliest"
    ) -> KafkaConsumer:
        check_group_id(group_id)
        for topic in topics:
            check_topic(topic)
        consumer = KafkaConsumer(self, group_id, list(topics), check_auto_offset_reset(auto_offset_reset))
        self._clients.append(consumer)
        return consumer

    def close(self) -> None:
        """Close the log and every producer and consumer opened from it."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._admin.close()
        if self._offsets is not None:
            self._offsets.close()


class KafkaDelivery:
    def __init__(self, future: Any, topic: str, servers: str) -> None:
        self._future = future
        self._topic = topic
        self._servers = servers

    def get(self, timeout_s: float | None = None) -> RecordMetadata:
        try:
            meta = self._future.get(timeout=timeout_s)
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"send to topic {self._topic!r} on {self._servers} was not acknowledged: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return RecordMetadata(meta.topic, meta.partition, meta.offset, meta.timestamp)


class KafkaProducer:
    """Idempotent, ``acks=all`` producer; ``flush`` raises if any send since the last flush failed."""

    def __init__(self, log: KafkaEventLog) -> None:
        self._log = log
        s = log.settings
        self._producer = log._connect(
            lambda: kafka.KafkaProducer(
                acks="all",
                enable_idempotence=True,
                delivery_timeout_ms=int(s.delivery_timeout_s * 1000),
                linger_ms=s.linger_ms,
                max_request_size=s.max_message_bytes,
                max_block_ms=int(s.connect_timeout_s * 1000),
                **log._config,
            )
        )
        self._failures: list[tuple[str, BaseException]] = []  # filled by the futures' errbacks
        self._sent_since_flush = 0
        self._lock = threading.Lock()
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
    ) -> KafkaDelivery:
        value_b, key_b, headers_n = check_record(
            topic, value, key, headers, self._log.settings.max_message_bytes
        )
        if partition is not None:
            known = self._call_partitions(topic)
            if partition not in known:
                raise EventLogError(
                    f"topic {topic!r} has {len(known)} partition(s); partition {partition} does not exist"
                )
        try:
            future = self._producer.send(
                topic,
                value_b,
                key=key_b,
                headers=list(headers_n),
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"send to topic {topic!r} on {self._log.bootstrap_servers} failed: {exc}"
            ) from exc
        future.add_errback(self._failed, topic)
        with self._lock:
            self._sent_since_flush += 1
        return KafkaDelivery(future, topic, self._log.bootstrap_servers)

    def _failed(self, topic: str, exc: BaseException) -> None:
        with self._lock:
            self._failures.append((topic, exc))

    def _call_partitions(self, topic: str) -> set[int]:
        try:
            return set(self._producer.partitions_for(topic) or ())
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"no metadata for topic {topic!r} on {self._log.bootstrap_servers}: {exc}"
            ) from exc

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except kerrors.KafkaError as exc:
            raise EventLogError(f"flush to {self._log.bootstrap_servers} did not finish: {exc}") from exc
        with self._lock:
            failures, self._failures = self._failures, []
            sent, self._sent_since_flush = self._sent_since_flush, 0
        if failures:
            topic, first = failures[0]
            raise EventLogError(
                f"{len(failures)} of {sent} records sent since the last flush were not acknowledged by "
                f"{self._log.bootstrap_servers}; first error (topic {topic!r}): "
                f"{type(first).__name__}: {first}"
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.close()


def _ktp(tp: TopicPartition) -> KafkaTP:
    return KafkaTP(tp.topic, tp.partition)


class KafkaConsumer:
    """A member of a Kafka consumer group; offsets are committed only by :meth:`commit`."""

    def __init__(self, log: KafkaEventLog, group_id: str, topics: list[str], reset: str) -> None:
        self._log = log
        self.group_id = group_id
        s = log.settings
        self._consumer = log._connect(
            lambda: kafka.KafkaConsumer(
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset=reset,
                session_timeout_ms=int(s.session_timeout_s * 1000),
                heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
                max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
                fetch_max_wait_ms=100,
                **log._config,
            )
        )
        self._consumer.subscribe(topics)
        self._closed = False

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _REBALANCED as exc:
            raise CommitFailedError(
                f"group {self.group_id!r} rebalanced during {what}: these partitions now belong to another "
                "member, which re-reads them from the last commit (at-least-once). Poll again and carry on."
            ) from exc
        except (kerrors.KafkaError, AssertionError) as exc:
            raise EventLogError(
                f"{what} failed for group {self.group_id!r} on {self._log.bootstrap_servers}: {exc!r}"
            ) from exc

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        batches = self._call(
            "poll", lambda: self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        )
        out: list[Record] = []
        for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
            for r in batches[tp]:
                headers = tuple((name, bytes(value)) for name, value in (r.headers or ()))
                value = b"" if r.value is None else bytes(r.value)
                out.append(Record(r.topic, r.partition, r.offset, r.timestamp, r.key, value, headers))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if offsets is None:
            self._call("commit", lambda: self._consumer.commit())
            return
        wanted = {_ktp(tp): OffsetAndMetadata(int(o), "", -1) for tp, o in offsets.items()}
        if wanted:
            self._call("commit", lambda: self._consumer.commit(offsets=wanted))

    def committed(self, tp: TopicPartition) -> int | None:
        result = self._call("committed", lambda: self._consumer.committed(_ktp(tp)))
        return None if result is None else int(result)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assignment():
            raise EventLogError(
                f"{tp} is not assigned to this consumer of group {self.group_id!r}; poll first so the "
                "group assigns partitions"
            )
        self._call("seek", lambda: self._consumer.seek(_ktp(tp), offset))

    def seek_to_time(self, timestamp_ms: int) -> None:
        tps = [_ktp(tp) for tp in self.assignment()]
        if not tps:
            return
        found = self._call(
            "offsets_for_times", lambda: self._consumer.offsets_for_times(dict.fromkeys(tps, timestamp_ms))
        )
        ends = self._call("end_offsets", lambda: self._consumer.end_offsets(tps))
        for ktp in tps:
            hit = found.get(ktp)
            target = hit.offset if hit is not None else ends[ktp]
            self._call("seek", functools.partial(self._consumer.seek, ktp, target))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(t.topic, t.partition) for t in self._consumer.assignment()}

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        self._call("pause", lambda: self._consumer.pause(*[_ktp(tp) for tp in tps]))

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._call("resume", lambda: self._consumer.resume(*[_ktp(tp) for tp in tps]))

    def lag(self) -> dict[TopicPartition, int]:
        tps = sorted(self.assignment())
        ends = self._call("end_offsets", lambda: self._consumer.end_offsets([_ktp(tp) for tp in tps]))
        return {tp: int(ends[_ktp(tp)]) - (self.committed(tp) or 0) for tp in tps}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close(autocommit=False)
