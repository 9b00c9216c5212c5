"""The log state store on a real Kafka broker: values written by one replica are read whole by another
(chunked), the newest wins, a writer that died before its commit marker leaves the previous value,
and the topic must be compacted (a missing one is created so)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import kafka
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from driftloop.eventlog.kafka import KafkaEventLog
from driftloop.settings import StateSettings
from driftloop.statestore import StateStoreError, open_state_store
from driftloop.statestore.changelog import encode_generation
from driftloop.statestore.kafka_changelog import KafkaChangelogStore
from driftloop.statestore.settings import ChangelogSettings
from tests.fixtures.kafka import quick_kafka_settings, unique_topic

pytestmark = pytest.mark.integration
SMALL = ChangelogSettings(chunk_bytes=1024, write_retry_s=5)


@pytest.fixture()
def kafka_log(kafka_bootstrap: str) -> Iterator[KafkaEventLog]:
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        yield log
    finally:
        log.close()


def cleanup_policy(bootstrap: str, topic: str) -> str:
    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    return str(next(iter(described.values()))[topic]["cleanup.policy"]["value"])


def test_another_replica_reads_what_one_wrote_chunked_and_the_newest_wins(
    kafka_log: KafkaEventLog, kafka_bootstrap: str
) -> None:
    topic = unique_topic("state")
    big = uuid.uuid4().bytes * 700  # 11,200 bytes: 11 chunks
    first = KafkaChangelogStore(kafka_log, topic, "joiner/g", SMALL)
    assert cleanup_policy(kafka_bootstrap, topic) == "compact"  # created compacted
    try:
        first.write_many({"request-0000.snapshot": big, "request-0001.snapshot": b"small"})
        other = KafkaChangelogStore(kafka_log, topic, "joiner/g", SMALL)  # another pod, another node
        try:
            assert other.read("request-0000.snapshot") == big
            assert other.read("request-0001.snapshot") == b"small"
            assert other.read("request-0002.snapshot") is None
            first.write("request-0000.snapshot", b"newer")  # after the other one opened: read catches up
            assert other.read("request-0000.snapshot") == b"newer"
            other.write("request-0001.snapshot", big[::-1])  # the shard moved to the other replica
            assert first.read("request-0001.snapshot") == big[::-1]
            first.write("request-0001.snapshot", b"moved back")
            assert other.read("request-0001.snapshot") == b"moved back"
            assert first.view.torn == other.view.torn == 0
        finally:
            other.close()
        monitor = KafkaChangelogStore(kafka_log, topic, "monitor/m", SMALL)  # same topic, another scope
        try:
            assert monitor.read("request-0000.snapshot") is None
        finally:
            monitor.close()
    finally:
        first.close()


def test_a_generation_without_its_commit_marker_leaves_the_previous_value(kafka_log: KafkaEventLog) -> None:
    topic = unique_topic("state")
    writer = KafkaChangelogStore(kafka_log, topic, "trainer/t", SMALL)
    try:
        writer.write("m.checkpoint", b"committed" * 300)
        # A writer that dies after sending part of its next generation, before the marker:
        generation, slot = writer.view.next_generation("m.checkpoint")
        chunks, _marker = encode_generation(
            "trainer/t", "m.checkpoint", b"torn" * 900, generation, slot, 1024
        )
        producer = kafka_log.producer()
        for key, value in chunks[:2]:
            producer.send(topic, value, key=key, partition=0)
        producer.flush()
        producer.close()
        restored = KafkaChangelogStore(kafka_log, topic, "trainer/t", SMALL)
        try:
            assert restored.read("m.checkpoint") == b"committed" * 300
            restored.write("m.checkpoint", b"after the crash")  # the replica that took over writes on
        finally:
            restored.close()
        third = KafkaChangelogStore(kafka_log, topic, "trainer/t", SMALL)
        try:
            assert third.read("m.checkpoint") == b"after the crash"
            assert third.view.torn == 0
        finally:
            third.close()
    finally:
        writer.close()


def test_discard_moves_the_value_aside(kafka_log: KafkaEventLog) -> None:
    topic = unique_topic("state")
    store = KafkaChangelogStore(kafka_log, topic, "monitor/m", SMALL)
    try:
        store.write("monitor.snapshot", b"from another log")
        where = store.discard("monitor.snapshot")
        assert "monitor/m/monitor.snapshot.discarded" in where and topic in where
        again = KafkaChangelogStore(kafka_log, topic, "monitor/m", SMALL)
        try:
            assert again.read("monitor.snapshot") is None
            assert again.read("monitor.snapshot.discarded") == b"from another log"
            again.write("monitor.snapshot", b"fresh")
        finally:
            again.close()
        assert store.read("monitor.snapshot") == b"fresh"
    finally:
        store.close()


def test_a_topic_that_is_not_compacted_is_refused(kafka_log: KafkaEventLog) -> None:
    topic = unique_topic("state")
    kafka_log.create_topic(topic, 1)  # the broker's default: cleanup.policy=delete
    with pytest.raises(StateStoreError, match=r"cleanup.policy=delete, not compact.*DRIFTLOOP_STATE_TOPIC"):
        KafkaChangelogStore(kafka_log, topic, "joiner/g", SMALL)


def test_the_log_store_needs_kafka(tmp_path: Path) -> None:
    from driftloop.eventlog import MemoryEventLog

    with pytest.raises(StateStoreError, match="DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"):
        open_state_store(MemoryEventLog(), tmp_path, "joiner/g", StateSettings(state_store="log"))
