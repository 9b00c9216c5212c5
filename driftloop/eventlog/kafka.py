"""The event log on Apache Kafka, with kafka-python 3.0.

Producers use ``acks=all``, unbounded retries within ``delivery_timeout_s`` and idempotence, so a
record is acknowledged once every in-sync replica has it and a retry never duplicates it. Consumers
never auto-commit: ``commit`` stores only what the caller says it has processed (at-least-once).
A broker that cannot be reached fails fast (``connect_timeout_s``) with an error that names it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import kafka
import kafka.errors as kerrors
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_bulk, kafka_compat
from driftloop.eventlog.base import EventLogError, RecordMetadata
from driftloop.eventlog.bulk import send_each
from driftloop.eventlog.flushing import FlushBarrier, FlushedBarrier
from driftloop.eventlog.kafka_consumer import KafkaConsumer
from driftloop.eventlog.kafka_retry import retrying
from driftloop.eventlog.metrics import EventLogMetrics
from driftloop.eventlog.settings import KafkaSettings
from driftloop.eventlog.validation import (
    check_auto_offset_reset,
    check_group_id,
    check_many,
    check_partitions,
    check_record,
    check_topic,
    check_topics,
)

kafka_compat.install()  # close sockets of failed connection attempts (kafka-python 3.0 leaks them)

T = TypeVar("T")


class KafkaEventLog:
    """A connection to one Kafka cluster. Opening it checks the brokers are reachable."""

    backend = "kafka"

    def __init__(
        self,
        bootstrap_servers: str,
        settings: KafkaSettings | None = None,
        *,
        metrics: EventLogMetrics | None = None,
    ) -> None:
        self.metrics = metrics or EventLogMetrics()
        self.bootstrap_servers = bootstrap_servers
        self.settings = settings or KafkaSettings()
        self._config = {"bootstrap_servers": bootstrap_servers.split(","), **self.settings.client_config()}
        self._admin = self._connect(lambda: kafka.KafkaAdminClient(**self._config))
        self._offsets: kafka.KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._clients: list[KafkaProducer | KafkaConsumer] = []  # closed with the log
        self._cluster_id: str | None = None

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

    def identity(self) -> str:
        """``kafka:cluster=<cluster id>``: the id the cluster was formatted with (asked once per
        connection, with the admin client's ``describe_cluster``), whichever broker answers."""
        if self._cluster_id is None:
            cluster = self._retrying("describing the cluster", self._admin.describe_cluster)
            cluster_id = cluster.get("cluster_id")
            if not cluster_id:
                raise EventLogError(
                    f"the Kafka cluster at {self.bootstrap_servers} reports no cluster id "
                    "(a broker older than Kafka 0.10.1); upgrade the brokers"
                )
            self._cluster_id = str(cluster_id)
        return f"kafka:cluster={self._cluster_id}"

    def create_topic(self, topic: str, partitions: int = 1) -> None:
        check_topic(topic)
        check_partitions(topic, partitions)
        spec = {"num_partitions": partitions, "replication_factor": self.settings.replication_factor}

        def create() -> None:
            with contextlib.suppress(kerrors.TopicAlreadyExistsError):
                self._admin.create_topics({topic: spec}, wait_for_metadata=True)

        self._retrying(f"creating topic {topic!r}", create)

    def _partition_count(self, topic: str) -> int | None:
        check_topic(topic)
        (meta,) = self._retrying(f"describing topic {topic!r}", lambda: self._admin.describe_topics([topic]))
        if meta.get("error_code", 0) != 0 or not meta.get("partitions"):
            return None
        return len(meta["partitions"])

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """An admin or offsets request, retried while a broker is coming back (``kafka_retry``)."""
        try:
            return retrying(call, self.settings.request_timeout_s)
        except kerrors.KafkaError as exc:
            raise EventLogError(f"{what} on {self.bootstrap_servers} failed: {exc}") from exc

    def partitions_for(self, topic: str) -> int:
        count = self._partition_count(topic)
        if count is None:
            raise EventLogError(
                f"topic {topic!r} does not exist on {self.bootstrap_servers}; create it first"
            )
        return count

    def end_offsets(self, topic: str) -> dict[int, int]:
        """Next offset per partition; ``{}`` for a topic that does not exist (as the embedded log)."""
        count = self._partition_count(topic)
        if count is None:
            return {}
        with self._lock:
            if self._offsets is None:
                self._offsets = self._connect(lambda: kafka.KafkaConsumer(group_id=None, **self._config))
            offsets = self._offsets
            partitions = [KafkaTP(topic, p) for p in range(count)]
            ends = self._retrying(
                f"reading end offsets of {topic!r}", lambda: offsets.end_offsets(partitions)
            )
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def producer(self) -> KafkaProducer:
        producer = KafkaProducer(self)
        self._clients.append(producer)
        return producer

    def consumer(
        self, group_id: str, topics: Sequence[str], *, auto_offset_reset: str = "earliest"
    ) -> KafkaConsumer:
        check_group_id(group_id)
        topics = check_topics(topics)
        consumer = KafkaConsumer(self, group_id, list(topics), check_auto_offset_reset(auto_offset_reset))
        self._clients.append(consumer)
        return consumer

    def close(self) -> None:
        """Close the log and every producer and consumer opened from it."""
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._admin.close()
        kafka_compat.close_sockets(self._admin)
        if self._offsets is not None:
            self._offsets.close()
            kafka_compat.close_sockets(self._offsets)


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


class _KafkaFlushBarrier:
    def __init__(self, producer: KafkaProducer, futures: list[Any]) -> None:
        self._producer = producer
        self._futures = futures

    def done(self) -> bool:
        # ``wait(0)`` is true once the batch's callbacks (which record failures) have run
        while self._futures and self._futures[-1].wait(0):
            self._futures.pop()
        if self._futures:
            return False
        self._producer._raise_failures()
        return True

    def wait(self, timeout_s: float | None = None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for future in self._futures:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not future.wait(left):
                raise EventLogError(
                    f"records sent to {self._producer._log.bootstrap_servers} were not acknowledged "
                    f"within {timeout_s} s"
                )
        self._futures = []
        self._producer._raise_failures()


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
                batch_size=s.batch_size_bytes,
                max_request_size=s.max_message_bytes,
                max_block_ms=int(s.connect_timeout_s * 1000),
                **log._config,
            )
        )
        self._failures: list[tuple[str, BaseException]] = []  # filled by the futures' errbacks
        self._sent_since_flush = 0
        self._sent_counters: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._bulk = kafka_bulk.supported(self._producer)

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
        try:
            future = self._send(topic, value, key, headers, partition, timestamp_ms)
        except EventLogError as exc:
            self._log.metrics.refused(self._log.backend, topic, exc)
            raise
        future.add_callback(self._acknowledged)
        future.add_errback(self._failed, topic)
        with self._lock:
            self._sent_since_flush += 1
        return KafkaDelivery(future, topic, self._log.bootstrap_servers)

    def _send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | str]],
        partition: int | None,
        timestamp_ms: int | None,
    ) -> Any:
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
        return future

    def send_many(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes]],
        *,
        partition: int,
        headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
        timestamps_ms: Sequence[int | None] | None = None,
    ) -> None:
        """Queue many (key, value) records for one partition (see ``kafka_bulk``); ``headers`` and
        ``timestamps_ms``, when given, run parallel to ``records``. The same records as ``send`` per
        record, at a fraction of the CPU. Their outcome is reported by ``flush``, like every send's."""
        if not records:
            return
        try:
            check_many(topic, records, headers, timestamps_ms, self._log.settings.max_message_bytes)
        except EventLogError as exc:
            self._log.metrics.refused(self._log.backend, topic, exc)
            raise
        if not self._bulk:
            send_each(self, topic, records, partition=partition, headers=headers, timestamps_ms=timestamps_ms)
            return
        known = self._call_partitions(topic)
        if partition not in known:
            raise EventLogError(
                f"topic {topic!r} has {len(known)} partition(s); partition {partition} does not exist"
            )
        watch = kafka_bulk.BatchWatch(topic, self._settled)
        try:
            kafka_bulk.append_bulk(
                self._producer, topic, partition, records, watch, headers=headers, timestamps_ms=timestamps_ms
            )
        except kerrors.KafkaError as exc:
            raise EventLogError(
                f"send to topic {topic!r} on {self._log.bootstrap_servers} failed: {exc}"
            ) from exc
        with self._lock:
            self._sent_since_flush += len(records)

    def _settled(self, topic: str, records: int, error: BaseException | None) -> None:
        if error is None:
            self._log.metrics.records_sent.labels(self._log.backend, topic).inc(records)
            return
        self._log.metrics.send_errors.labels(self._log.backend, topic, "not_acknowledged").inc(records)
        with self._lock:
            self._failures.extend([(topic, error)] * records)

    def _acknowledged(self, metadata: Any) -> None:
        counter = self._sent_counters.get(metadata.topic)
        if counter is None:  # one label lookup per topic, not per record
            counter = self._log.metrics.records_sent.labels(self._log.backend, metadata.topic)
            self._sent_counters[metadata.topic] = counter
        counter.inc()

    def _failed(self, topic: str, exc: BaseException) -> None:
        self._log.metrics.send_errors.labels(self._log.backend, topic, "not_acknowledged").inc()
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
        self._raise_failures()

    def flush_async(self) -> FlushBarrier:
        """A barrier done once every batch open now (so every record queued so far) was acknowledged;
        the batches go out as usual, after at most ``linger_ms``. Without kafka-python's accumulator
        internals (``kafka_bulk.supported``) this flushes in the call."""
        if not self._bulk:
            self.flush()
            return FlushedBarrier()
        batches = self._producer._accumulator._incomplete.all()
        return _KafkaFlushBarrier(self, [batch.produce_future for batch in batches])

    def _raise_failures(self) -> None:
        """Raise (once) for the records not acknowledged since this was last called."""
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
            kafka_compat.close_sockets(self._producer._sender)  # the producer's client is its sender's
