"""Kafka only: a broker that goes away and comes back, and one that is not there at all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from driftloop.eventlog import EventLogError, TopicPartition
from driftloop.eventlog.broker import LocalKafkaBroker, free_port
from driftloop.eventlog.kafka import KafkaEventLog
from tests.eventlog.conftest import drain
from tests.fixtures.kafka import quick_kafka_settings

pytestmark = pytest.mark.integration


def test_broker_restarted_mid_stream_loses_no_acknowledged_record_and_consumers_resume(
    tmp_path: Path,
) -> None:
    broker = LocalKafkaBroker(tmp_path / "broker")  # its own broker: the shared one must stay up
    broker.start()
    log = KafkaEventLog(broker.bootstrap_servers, quick_kafka_settings(session_timeout_s=6.0))
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
        broker.cleanup()


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
