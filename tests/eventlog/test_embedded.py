"""Embedded-log behaviour that has no Kafka twin in the contract suite: time-driven group membership,
retention, durability across re-opening, and the factory that picks it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from driftloop.eventlog import MemoryEventLog, TopicPartition, open_event_log
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.settings import EmbeddedSettings
from driftloop.settings import StateSettings


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_member_that_stops_polling_is_declared_dead_after_the_session_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    log = EmbeddedEventLog(tmp_path, EmbeddedSettings(session_timeout_s=10), clock=clock)
    log.create_topic("t", 2)
    alive = log.consumer("g", ["t"])
    silent = log.consumer("g", ["t"])
    assert len(alive.assignment()) == len(silent.assignment()) == 1
    clock.now += 9  # within the session: nothing changes
    assert len(alive.assignment()) == 1
    clock.now += 2  # silent has not been heard of for 11 s > 10 s
    assert alive.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}
    # the dead member comes back: it rejoins and the partitions are split again
    assert len(silent.assignment()) == 1
    assert len(alive.assignment()) == 1
    log.close()


def test_retention_drops_the_oldest_records_by_age_and_by_size_as_a_prefix(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = EmbeddedSettings(retention_s=3600, retention_bytes=10_000, retention_check_s=1e9)
    log = EmbeddedEventLog(tmp_path, settings, clock=clock)
    producer = log.producer()
    for i in range(5):
        producer.send("t", b"x" * 100, timestamp_ms=int((clock.now - 7200 + i) * 1000))  # two hours old
    for _ in range(20):
        producer.send("t", b"y" * 1000)  # 20 kB, limit 10 kB
    assert log.enforce_retention() == 5 + 10
    assert log.metrics.value("driftloop_eventlog_records_expired", topic="t") == 15
    assert log.beginning_offsets("t") == {0: 15}
    assert log.end_offsets("t") == {0: 25}
    consumer = log.consumer("late", ["t"])
    records = consumer.poll(timeout_s=0, max_records=100)
    assert [r.offset for r in records] == list(range(15, 25))
    assert consumer.lag() == {TopicPartition("t", 0): 10}  # nothing committed: end minus first stored
    consumer.commit()
    assert consumer.lag() == {TopicPartition("t", 0): 0}
    assert log.enforce_retention() == 0
    log.close()


def test_acknowledged_records_and_commits_survive_reopening(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path)
    producer = log.producer()
    metas = [producer.send("t", str(i).encode(), key=b"k").get() for i in range(10)]
    consumer = log.consumer("g", ["t"])
    consumer.poll(timeout_s=0, max_records=4)
    consumer.commit()
    log.close()
    reopened = EmbeddedEventLog(tmp_path)
    assert reopened.end_offsets("t") == {0: 10}
    assert [m.offset for m in metas] == list(range(10))
    again = reopened.consumer("g", ["t"])
    assert [r.value for r in again.poll(timeout_s=0)] == [str(i).encode() for i in range(4, 10)]
    reopened.close()


def test_identity_is_the_resolved_directory_and_an_instance_id_drawn_once(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path / "home" / "eventlog")
    log.producer().send("t", b"v").get()
    identity = log.identity()
    log.close()
    assert identity.startswith(f"embedded:{(tmp_path / 'home' / 'eventlog').resolve()}#")
    (tmp_path / "link").symlink_to(tmp_path / "home")
    for same in (
        EmbeddedEventLog(tmp_path / "home" / "eventlog"),
        EmbeddedEventLog(tmp_path / "link" / "eventlog"),
    ):
        assert same.identity() == identity  # reopened, or reached through a symlink
        same.close()
    shutil.copytree(tmp_path / "home", tmp_path / "copy")
    copy = EmbeddedEventLog(tmp_path / "copy" / "eventlog")
    assert copy.end_offsets("t") == {0: 1}
    assert copy.identity().split("#")[1] == identity.split("#")[1] and copy.identity() != identity
    copy.close()
    shutil.rmtree(tmp_path / "home" / "eventlog")
    recreated = EmbeddedEventLog(tmp_path / "home" / "eventlog")  # same path, a new log
    assert recreated.identity() != identity
    recreated.close()


def test_the_factory_picks_the_log_from_the_settings(tmp_path: Path) -> None:
    embedded = open_event_log(StateSettings(home=tmp_path / "home"))
    assert isinstance(embedded, EmbeddedEventLog)
    assert embedded.directory == (tmp_path / "home").resolve() / "eventlog"
    embedded.close()
    assert isinstance(open_event_log(StateSettings(kafka_bootstrap_servers="memory://")), MemoryEventLog)


def test_a_closed_producer_or_consumer_says_so(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path)
    producer = log.producer()
    producer.close()
    with pytest.raises(Exception, match="producer is closed"):
        producer.send("t", b"v")
    consumer = log.consumer("g", ["t"])
    consumer.close()
    with pytest.raises(Exception, match="is closed"):
        consumer.poll(timeout_s=0)
    log.close()
