"""The event-log contract, run against every implementation (memory, embedded, real Kafka)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest

from driftloop.eventlog import (
    CommitFailedError,
    EventLogError,
    InvalidRecordError,
    InvalidTopicError,
    MemoryEventLog,
    RecordTooLargeError,
    TopicPartition,
    partition_for_key,
    send_many,
)
from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.eventlog.conftest import LogKit, drain, poll_until


def test_records_keep_their_order_within_each_partition(kit: LogKit) -> None:
    topic = kit.topic(partitions=3)
    producer = kit.open().producer()
    for seq in range(300):
        producer.send(topic, json.dumps({"seq": seq}).encode(), key=f"asset-{seq % 10}".encode())
    producer.flush()
    records = drain(kit.consumer("g", [topic]), 300)
    assert len(records) == 300
    by_partition: dict[int, list[int]] = defaultdict(list)
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record.offset)
        by_key[record.key].append(json.loads(record.value)["seq"])
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    for seqs in by_key.values():
        assert seqs == sorted(seqs)
    assert sum(kit.open().end_offsets(topic).values()) == 300


def test_a_key_always_lands_on_kafkas_partition_for_it(kit: LogKit) -> None:
    topic = kit.topic(partitions=5)
    producer = kit.open().producer()
    seen: dict[bytes, set[int]] = defaultdict(set)
    for i in range(200):
        key = f"pump-{i % 23:02d}".encode()
        meta = producer.send(topic, b"v", key=key).get(timeout_s=10)
        seen[key].add(meta.partition)
    for key, partitions in seen.items():
        assert partitions == {partition_for_key(key, 5)}
    assert len({p for ps in seen.values() for p in ps}) > 1


def test_headers_and_timestamps_round_trip(kit: LogKit) -> None:
    topic = kit.topic()
    producer = kit.open().producer()
    producer.send(
        topic,
        b"{}",
        key=b"r1",
        headers=[("type", "io.seldon.serving.inference.request"), ("raw", b"\x00\xff")],
        timestamp_ms=1_700_000_000_123,
    ).get(timeout_s=10)
    (record,) = drain(kit.consumer("g", [topic]), 1)
    assert record.header("type") == b"io.seldon.serving.inference.request"
    assert record.header("raw") == b"\x00\xff"
    assert record.timestamp_ms == 1_700_000_000_123
    assert record.key == b"r1"


def test_a_group_splits_partitions_and_rebalances_when_a_member_leaves(kit: LogKit) -> None:
    topic = kit.topic(partitions=4)
    everything = {TopicPartition(topic, p) for p in range(4)}
    first = kit.consumer("joiner", [topic])
    second = kit.consumer("joiner", [topic])

    def split(_: object) -> bool:
        a, b = first.assignment(), second.assignment()
        return a | b == everything and not a & b and len(a) == len(b) == 2

    poll_until([first, second], split)
    producer = kit.open().producer()
    for i in range(100):
        producer.send(topic, str(i).encode(), key=str(i).encode())
    producer.flush()
    received = poll_until([first, second], lambda got: len(got[0]) + len(got[1]) >= 100)
    assert sorted(int(r.value) for r in received[0] + received[1]) == list(range(100))
    assert {r.tp for r in received[0]} <= first.assignment()
    assert {r.tp for r in received[1]} <= second.assignment()
    first.commit()
    second.commit()

    second.close()
    poll_until([first], lambda _: first.assignment() == everything)
    for i in range(100, 140):
        producer.send(topic, str(i).encode(), key=str(i).encode())
    producer.flush()
    later = drain(first, 40)
    assert sorted(int(r.value) for r in later) == list(range(100, 140))


def test_a_new_member_resumes_from_the_committed_offset(kit: LogKit) -> None:
    topic = kit.topic()
    producer = kit.open().producer()
    for i in range(20):
        producer.send(topic, str(i).encode())
    producer.flush()
    tp = TopicPartition(topic, 0)
    first = kit.consumer("trainer", [topic])
    records = drain(first, 20)
    assert [int(r.value) for r in records] == list(range(20))
    first.commit({tp: records[9].offset + 1})  # processed the first ten only
    assert first.committed(tp) == 10
    first.close()
    second = kit.consumer("trainer", [topic])
    resumed = drain(second, 10)
    assert [int(r.value) for r in resumed] == list(range(10, 20))
    second.commit()
    assert second.committed(tp) == 20
    assert second.lag() == {tp: 0}


def test_replay_from_an_offset_and_from_a_time(kit: LogKit) -> None:
    topic = kit.topic()
    producer = kit.open().producer()
    base = 1_700_000_000_000
    for i in range(10):
        producer.send(topic, str(i).encode(), timestamp_ms=base + i * 1000)
    producer.flush()
    tp = TopicPartition(topic, 0)
    consumer = kit.consumer("replay", [topic])
    assert len(drain(consumer, 10)) == 10
    consumer.seek(tp, 3)
    assert [int(r.value) for r in drain(consumer, 7)] == list(range(3, 10))
    consumer.seek_to_time(base + 6500)
    assert [int(r.value) for r in drain(consumer, 3)] == [7, 8, 9]
    consumer.seek_to_time(base + 60_000)  # after the last record: the end of the partition
    assert consumer.poll(timeout_s=0.3) == []


def test_lag_is_end_offset_minus_committed(kit: LogKit) -> None:
    topic = kit.topic(partitions=2)
    producer = kit.open().producer()
    for _ in range(10):
        producer.send(topic, b"a", partition=0)
    for _ in range(5):
        producer.send(topic, b"b", partition=1)
    producer.flush()
    consumer = kit.consumer("lagging", [topic])
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    poll_until([consumer], lambda _: consumer.assignment() == {tp0, tp1})
    assert consumer.lag() == {tp0: 10, tp1: 5}
    consumer.commit({tp0: 4, tp1: 5})
    assert consumer.lag() == {tp0: 6, tp1: 0}
    assert kit.open().end_offsets(topic) == {0: 10, 1: 5}


def test_latest_reset_skips_what_was_there_before(kit: LogKit) -> None:
    topic = kit.topic()
    producer = kit.open().producer()
    producer.send(topic, b"old").get(timeout_s=10)
    consumer = kit.consumer("tail", [topic], auto_offset_reset="latest")
    tp = TopicPartition(topic, 0)
    poll_until([consumer], lambda _: consumer.assignment() == {tp})
    producer.send(topic, b"new").get(timeout_s=10)
    assert [r.value for r in drain(consumer, 1)] == [b"new"]


@pytest.mark.parametrize("name", ["", "has space", "x" * 250, "..", "pümpe", "a/b"])
def test_invalid_topic_names_are_refused(kit: LogKit, name: str) -> None:
    log = kit.open()
    with pytest.raises(InvalidTopicError, match="topic name"):
        log.create_topic(name)
    with pytest.raises(InvalidTopicError):
        log.producer().send(name, b"v")


def test_bad_records_are_refused_before_anything_is_sent(kit: LogKit) -> None:
    topic = kit.topic()
    log = kit.open()
    producer = log.producer()
    with pytest.raises(RecordTooLargeError, match="1048576 bytes"):
        producer.send(topic, b"x" * (2 * 1024 * 1024))
    with pytest.raises(InvalidRecordError, match="value must be bytes, got str"):
        producer.send(topic, "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError, match="value must be bytes, got dict"):
        producer.send(topic, {"a": 1})  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError, match="key must be bytes"):
        producer.send(topic, b"v", key="k")  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError, match="header 'n' value must be bytes or str, got int"):
        producer.send(topic, b"v", headers=[("n", 1)])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError, match="header name b'n' must be str"):
        producer.send(topic, b"v", headers=[(b"n", b"1")])  # type: ignore[list-item]
    with pytest.raises(EventLogError, match="partition 7 does not exist"):
        producer.send(topic, b"v", partition=7).get(timeout_s=10)
    producer.flush()
    assert log.end_offsets(topic) == {0: 0}
    assert isinstance(RecordTooLargeError("x"), EventLogError)


def test_commit_of_a_partition_that_moved_to_another_member_fails_clearly(local_kit: LogKit) -> None:
    """Embedded and memory only: on Kafka the broker's rebalance protocol fences such commits and
    kafka-python raises CommitFailedError, which the Kafka consumer maps to the same error type."""
    kit = local_kit
    topic = kit.topic(partitions=2)
    producer = kit.open().producer()
    producer.send(topic, b"a", partition=0)
    producer.send(topic, b"b", partition=1)
    first = kit.consumer("g", [topic])
    assert len(drain(first, 2)) == 2
    second = kit.consumer("g", [topic])
    with pytest.raises(CommitFailedError, match="no longer assigned"):
        first.commit()
    assert len(first.assignment()) == len(second.assignment()) == 1
    (moved,) = second.assignment()
    assert first.committed(moved) is None
    assert [r.tp for r in drain(second, 1)] == [moved]  # the new owner re-reads it


def test_every_record_sent_refused_polled_and_committed_is_counted(kit: LogKit) -> None:
    topic = kit.topic()
    log = kit.open()
    metrics = log.metrics  # type: ignore[attr-defined]
    backend = log.backend  # type: ignore[attr-defined]
    producer = log.producer()
    for _ in range(3):
        producer.send(topic, b"v").get(timeout_s=10)
    with pytest.raises(RecordTooLargeError):
        producer.send(topic, b"x" * (2 * 1024 * 1024))
    with pytest.raises(InvalidTopicError):
        producer.send("bad topic", b"v")
    consumer = log.consumer("counted", [topic])
    assert len(drain(consumer, 3)) == 3
    consumer.commit()
    # Kafka counts in the delivery callback, which may run just after get() returned
    deadline = time.monotonic() + 10
    while metrics.value("driftloop_eventlog_records_sent", backend=backend, topic=topic) < 3:
        assert time.monotonic() < deadline, "acknowledged sends were not counted"
        time.sleep(0.01)
    assert metrics.value("driftloop_eventlog_records_sent", backend=backend, topic=topic) == 3
    assert (
        metrics.value("driftloop_eventlog_send_errors", backend=backend, topic=topic, reason="too_large") == 1
    )
    assert (
        metrics.value(
            "driftloop_eventlog_send_errors", backend=backend, topic="<invalid>", reason="invalid_topic"
        )
        == 1
    )
    assert (
        metrics.value("driftloop_eventlog_records_polled", backend=backend, group="counted", topic=topic) == 3
    )
    assert metrics.value("driftloop_eventlog_commits", backend=backend, group="counted", outcome="ok") == 1


@pytest.mark.parametrize("topics", ["plant.telemetry", [], None])
def test_a_subscription_must_be_a_list_of_topics(kit: LogKit, topics: object) -> None:
    with pytest.raises(EventLogError, match="topics"):
        kit.open().consumer("g", topics)  # type: ignore[arg-type]


def test_send_many_writes_the_same_records_as_send(kit: LogKit) -> None:
    """``send_many`` (bulk on Kafka, one ``send`` each elsewhere) interleaved with ``send``: order,
    keys, values, headers and timestamps as sent, and every record counted once acknowledged."""
    topic = kit.topic(partitions=2)
    log = kit.open()
    producer = log.producer()
    producer.send(topic, b"first", key=b"k", partition=1)
    pairs = [(None if i % 7 == 0 else f"k{i}".encode(), f"v{i}".encode() * (i % 50 + 1)) for i in range(300)]
    headers = [[("requestid", f"r{i}".encode())] if i % 2 else [] for i in range(300)]
    stamps = [1_700_000_000_000 + i if i % 3 else None for i in range(300)]
    before = int(time.time() * 1000)
    send_many(producer, topic, pairs[:100], partition=1)
    send_many(producer, topic, pairs[100:], partition=1, headers=headers[100:], timestamps_ms=stamps[100:])
    producer.send(topic, b"last", partition=1)
    producer.flush()
    records = drain(kit.consumer("g", [topic]), 302)
    assert [r.partition for r in records] == [1] * 302
    assert [r.offset for r in records] == list(range(302))
    assert [(r.key, r.value) for r in records] == [(b"k", b"first"), *pairs, (None, b"last")]
    for i, record in enumerate(records[101:301], start=100):
        assert list(record.headers) == headers[i]
        if stamps[i] is not None:
            assert record.timestamp_ms == stamps[i]
        else:
            assert record.timestamp_ms >= before
    assert all(r.headers == () and r.timestamp_ms >= before for r in records[1:101])
    metrics, backend = log.metrics, log.backend  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while metrics.value("driftloop_eventlog_records_sent", backend=backend, topic=topic) < 302:
        assert time.monotonic() < deadline, "acknowledged sends were not counted"
        time.sleep(0.01)
    assert metrics.value("driftloop_eventlog_records_sent", backend=backend, topic=topic) == 302


def test_send_many_refuses_bad_records_before_sending_any(kit: LogKit) -> None:
    topic = kit.topic()
    producer = kit.open().producer()
    with pytest.raises(InvalidRecordError):
        send_many(producer, topic, [(b"k", b"ok"), (b"k", "text")], partition=0)  # type: ignore[list-item]
    with pytest.raises(RecordTooLargeError):
        send_many(producer, topic, [(None, b"x" * (2 * 1024 * 1024))], partition=0)
    producer.flush()
    assert sum(kit.open().end_offsets(topic).values()) == 0


def test_identity_is_the_same_from_every_connection_and_differs_from_any_other_log(
    kit: LogKit, tmp_path: Path
) -> None:
    first = kit.open().identity()
    assert first.startswith(f"{kit.kind}:")
    assert kit.open().identity() == first  # another connection to the same log
    other_logs = [MemoryEventLog(), EmbeddedEventLog(tmp_path / "another-log")]
    try:
        assert first not in {other.identity() for other in other_logs}
    finally:
        for other in other_logs:
            other.close()
