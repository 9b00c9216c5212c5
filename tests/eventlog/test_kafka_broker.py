"""Kafka only: a broker that goes away and comes back, and one that is not there at all."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import pytest

from driftloop.eventlog import EventLogError, TopicPartition
from driftloop.eventlog.broker import LocalKafkaBroker, free_port
from driftloop.eventlog.kafka import KafkaEventLog
from tests.eventlog.conftest import drain
from tests.fixtures.kafka import quick_kafka_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaBroker]:
    """A broker these tests may stop and restart (the session broker must stay up for the others)."""
    broker = LocalKafkaBroker(tmp_path_factory.mktemp("own-broker"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_broker_restarted_mid_stream_loses_no_acknowledged_record_and_consumers_resume(
    own_broker: LocalKafkaBroker,
) -> None:
    broker = own_broker
    log = KafkaEventLog(broker.bootstrap_servers, quick_kafka_settings())
    try:
        log.create_topic("plant.telemetry", 2)
        producer = log.producer()
        before = [producer.send("plant.telemetry", str(i).encode(), key=str(i).encode()) for i in range(100)]
        producer.flush(30)
        consumer = log.consumer("joiner", ["plant.telemetry"])
        first = drain(consumer, 100)
        assert sorted(int(r.value) for r in first) == list(range(100))
        consumer.commit()
        committed = {tp: consumer.committed(tp) for tp in consumer.assignment()}

        broker.stop()
        during = [
            producer.send("plant.telemetry", str(i).encode(), key=str(i).encode()) for i in range(100, 150)
        ]
        broker.start()  # same storage, same ports
        for delivery in during:
            delivery.get(timeout_s=60)  # acknowledged once the broker is back (retries, idempotent)
        after = [
            producer.send("plant.telemetry", str(i).encode(), key=str(i).encode()) for i in range(150, 200)
        ]
        producer.flush(60)
        # every send was acknowledged (get() raises otherwise), so all 200 must be readable
        acked = {i for i, d in enumerate(before + during + after) if d.get().offset >= 0}
        assert acked == set(range(200))

        resumed = drain(consumer, 100, timeout_s=60)
        values = {int(r.value) for r in resumed}
        assert values == set(range(100, 200))  # resumed after its commit
        assert {int(r.value) for r in first} | values == acked  # no acknowledged record lost
        assert {tp: consumer.committed(tp) for tp in committed} == committed  # commits survived the restart
        consumer.commit()
        assert all(lag == 0 for lag in consumer.lag().values())
        ends = log.end_offsets("plant.telemetry")
        assert sum(ends.values()) == 200  # idempotent producer: retries wrote no duplicates
        assert TopicPartition("plant.telemetry", 0) in consumer.assignment()
    finally:
        log.close()
        broker.start()  # running again for the next test, whatever happened here


def test_flush_raises_when_sends_were_not_acknowledged(own_broker: LocalKafkaBroker) -> None:
    settings = quick_kafka_settings(delivery_timeout_s=3.0, request_timeout_s=1.0, linger_ms=0)
    log = KafkaEventLog(own_broker.bootstrap_servers, settings)
    try:
        log.create_topic("unacked", 1)
        producer = log.producer()
        producer.send("unacked", b"ok").get(timeout_s=10)
        own_broker.stop()
        delivery = producer.send("unacked", b"lost")
        with pytest.raises(
            EventLogError, match="1 of 2 records sent since the last flush were not acknowledged"
        ):
            producer.flush(timeout_s=30)
        with pytest.raises(EventLogError, match="was not acknowledged"):
            delivery.get(timeout_s=1)
    finally:
        log.close()
        own_broker.start()


def test_a_broker_that_is_down_gives_a_clear_error_naming_it_within_seconds() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(EventLogError) as caught:
        KafkaEventLog(address, quick_kafka_settings(connect_timeout_s=2.0))
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert address in message
    assert "Check that the broker is running" in message
    assert "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS" in message
    assert elapsed < 15, f"took {elapsed:.1f} s to give up on a dead broker"


def test_identity_is_the_cluster_id_the_broker_was_formatted_with(
    kafka_broker: LocalKafkaBroker, own_broker: LocalKafkaBroker
) -> None:
    identities = []
    for broker in (kafka_broker, own_broker):
        meta = (broker.workdir / "data" / "meta.properties").read_text()
        (cluster_id,) = re.findall(r"^cluster\.id=(.+)$", meta, flags=re.MULTILINE)
        log = KafkaEventLog(broker.bootstrap_servers, quick_kafka_settings())
        try:
            assert log.identity() == f"kafka:cluster={cluster_id}"
        finally:
            log.close()
        identities.append(log.identity())  # asked once per connection: still known after close
    assert identities[0] != identities[1]


def test_the_new_topic_fixture_creates_unique_topics_on_the_shared_broker(
    new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    first, second = new_topic(partitions=3), new_topic()
    assert first != second
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        assert log.partitions_for(first) == 3
        assert log.partitions_for(second) == 1
    finally:
        log.close()


def test_send_many_spans_batches_and_flush_reports_what_was_not_acknowledged(
    own_broker: LocalKafkaBroker,
) -> None:
    """Bulk sends open new producer batches as they fill (records past one batch are all delivered,
    in order), and records in batches the broker never acknowledged make ``flush`` raise."""
    settings = quick_kafka_settings(
        delivery_timeout_s=3.0, request_timeout_s=1.0, linger_ms=0, batch_size_bytes=4096
    )
    log = KafkaEventLog(own_broker.bootstrap_servers, settings)
    try:
        log.create_topic("bulk", 2)
        producer = log.producer()
        pairs = [(f"k{i}".encode(), f"value-{i}".encode() * 20) for i in range(2000)]  # ~100 batches
        producer.send_many("bulk", pairs, partition=1)
        producer.flush(timeout_s=30)
        consumer = log.consumer("bulk-check", ["bulk"])
        records = drain(consumer, 2000, timeout_s=60)
        assert [(r.key, r.value) for r in records] == pairs
        assert [r.offset for r in records] == list(range(2000))
        consumer.close()
        own_broker.stop()
        producer.send_many("bulk", pairs[:50], partition=0)
        with pytest.raises(EventLogError, match="50 of 50 records sent since the last flush"):
            producer.flush(timeout_s=30)
    finally:
        log.close()
        own_broker.start()


def test_consumers_read_their_connections_in_large_chunks_and_get_every_byte(
    new_topic: Callable[..., str], kafka_bootstrap: str
) -> None:
    """driftloop's consumers read up to 1 MiB per recv (kafka-python: 4 KiB); multi-megabyte fetches
    come through whole. A plain kafka-python consumer in the same process keeps its own reads."""
    import functools
    import os

    import kafka

    topic = new_topic(partitions=2)
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        producer = log.producer()
        pairs = [(f"k{i}".encode(), os.urandom(2000 + i % 3000)) for i in range(3000)]  # ~10 MB
        for key, value in pairs:
            producer.send(topic, value, key=key)
        producer.flush(timeout_s=30)
        consumer = log.consumer("large-reads", [topic])
        records = drain(consumer, len(pairs), timeout_s=60)
        assert sorted((r.key, r.value) for r in records) == sorted(pairs)
        conns = consumer._consumer._client._manager._conns  # type: ignore[attr-defined]
        transports = [c.transport for c in conns.values() if c.transport is not None]
        assert transports and all(isinstance(t._sock_recv, functools.partial) for t in transports)
        consumer.close()
        plain = kafka.KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
        try:
            plain.poll(timeout_ms=2000)
            conns = plain._client._manager._conns
            assert all(
                not isinstance(c.transport._sock_recv, functools.partial)
                for c in conns.values()
                if c.transport
            )
        finally:
            plain.close()
    finally:
        log.close()


def test_a_flush_barrier_is_done_once_what_came_before_it_is_acknowledged_and_raises_for_lost_records(
    own_broker: LocalKafkaBroker,
) -> None:
    """``flush_async`` (the joiner's checkpoints wait on it while they go on joining): once its barrier
    is done every record sent before it can be read back; records the broker never acknowledged make
    ``done`` raise, as ``flush`` would."""
    settings = quick_kafka_settings(
        delivery_timeout_s=3.0, request_timeout_s=1.0, linger_ms=20, batch_size_bytes=4096
    )
    log = KafkaEventLog(own_broker.bootstrap_servers, settings)
    try:
        log.create_topic("barrier", 1)
        producer = log.producer()
        pairs = [(f"k{i}".encode(), f"value-{i}".encode() * 20) for i in range(2000)]  # ~100 batches
        producer.send_many("barrier", pairs, partition=0)
        barrier = producer.flush_async()
        barrier.wait(timeout_s=30)
        assert barrier.done()
        consumer = log.consumer("barrier-check", ["barrier"])
        assert [(r.key, r.value) for r in drain(consumer, 2000, timeout_s=60)] == pairs
        consumer.close()
        own_broker.stop()
        producer.send_many("barrier", pairs[:50], partition=0)
        lost = producer.flush_async()
        deadline = time.monotonic() + 30
        with pytest.raises(EventLogError, match="50 of 50 records sent since the last flush"):
            while time.monotonic() < deadline and not lost.done():
                time.sleep(0.05)
    finally:
        log.close()
        own_broker.start()
