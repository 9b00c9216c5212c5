"""When state cannot be stored, nothing past it is committed: a joiner checkpoint whose store refuses
the write commits no offset (fast, in-memory log and a refusing store); and the log store against a
real broker that goes away: a write fails after its retry budget, naming the topic, and a write
that is still retrying when the broker comes back succeeds."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from driftloop_feedback.errors import SnapshotError
from driftloop_feedback.join.pipeline import Joiner
from driftloop_feedback.join.settings import JoinerSettings

from driftloop.eventlog import MemoryEventLog, TopicPartition
from driftloop.eventlog.broker import LocalKafkaBroker
from driftloop.eventlog.kafka import KafkaEventLog
from driftloop.statestore import DirectoryStore, StateStoreError
from driftloop.statestore.kafka_changelog import KafkaChangelogStore
from driftloop.statestore.settings import ChangelogSettings
from tests.feedback.helpers import chain_events
from tests.fixtures.kafka import quick_kafka_settings, unique_topic


class RefusingStore(DirectoryStore):
    """A directory store whose writes fail while ``refusing`` is set (in-memory stand-in for an outage)."""

    refusing = True

    def write_many(self, items: Mapping[str, bytes]) -> None:
        if self.refusing:
            raise StateStoreError("state topic driftloop.state: not acknowledged (test)")
        super().write_many(items)


def test_a_checkpoint_whose_state_is_not_stored_commits_no_offset(tmp_path: Path) -> None:
    log = MemoryEventLog()
    s = JoinerSettings.model_validate({"partitions": 1, "mode": "request", "state_dir": tmp_path})
    joiner = Joiner(log, s)
    producer = log.producer()
    for i in range(5):
        for ev in chain_events(f"req-{i}", [[float(i)]], [float(i)]):
            producer.send(s.request_log_topic, ev.payload, headers=ev.headers())
    stage = joiner.request
    store = RefusingStore(tmp_path / "refusing")
    stage.snapshots.store = store
    for _ in range(20):
        joiner.step(0.0)
    tp = TopicPartition(s.keyed_log_topic, 0)
    assert stage.next_offsets.get(tp, 0) > 0  # the stage read input whose state it holds
    with pytest.raises(SnapshotError, match="not acknowledged"):
        stage.checkpoint()
    assert stage.consumer.committed(tp) is None  # nothing committed past what is stored
    store.refusing = False
    stage.checkpoint()
    assert stage.consumer.committed(tp) == stage.next_offsets[tp]
    assert stage.snapshots.load("request", 0) is not None
    joiner.close()
    log.close()


@pytest.mark.integration
def test_a_write_fails_after_its_retry_budget_and_succeeds_when_the_broker_is_back(tmp_path: Path) -> None:
    broker = LocalKafkaBroker(tmp_path / "broker").start()
    log = KafkaEventLog(
        broker.bootstrap_servers, quick_kafka_settings(request_timeout_s=2.0, delivery_timeout_s=3.0)
    )
    topic = unique_topic("state")
    store: KafkaChangelogStore | None = None
    restarter: threading.Thread | None = None
    try:
        store = KafkaChangelogStore(
            log, topic, "joiner/g", ChangelogSettings(chunk_bytes=1024, write_retry_s=2)
        )
        store.write("request-0000.snapshot", b"stored" * 500)
        broker.stop()
        started = time.monotonic()
        with pytest.raises(
            StateStoreError, match=rf"to topic {topic} .* not acknowledged within 2 s.*nothing past"
        ):
            store.write("request-0000.snapshot", b"lost" * 500)
        assert time.monotonic() - started < 30
        store.settings = ChangelogSettings(chunk_bytes=1024, write_retry_s=120)

        def restart() -> None:
            time.sleep(2)
            broker.start()

        restarter = threading.Thread(target=restart)
        restarter.start()
        store.write("request-0000.snapshot", b"after the outage" * 100)  # retried until the broker is back
        restarter.join()
        other = KafkaChangelogStore(log, topic, "joiner/g", ChangelogSettings(chunk_bytes=1024))
        try:
            assert other.read("request-0000.snapshot") == b"after the outage" * 100
        finally:
            other.close()
    finally:
        if restarter is not None:
            restarter.join()
        if store is not None:
            store.close()
        log.close()
        broker.stop()
