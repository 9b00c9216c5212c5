"""The joiner's snapshots are bound to the log, group, topics and partition they were taken from: one
restored against another log (another embedded log, the same path created again, Kafka instead of the
embedded log) stops the joiner with a message naming both, or with ``reset_state`` is moved aside and
its shard starts from this log's committed offsets; input is never skipped. Snapshots written before
sources were recorded (format 1) are adopted only where the log vouches for their offsets."""

from __future__ import annotations

import logging
import pickle
import shutil
import time
from pathlib import Path

import pytest
from driftloop_feedback.join.pipeline import Joiner
from driftloop_feedback.join.settings import JoinerSettings
from driftloop_feedback.join.snapshots import SnapshotSourceError, StateSource, source_problem
from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.records import TruthRecord
from prometheus_client import generate_latest

from driftloop.eventlog import EventLog, MemoryEventLog, TopicPartition
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.kafka import KafkaEventLog
from tests.feedback.helpers import chain_events
from tests.feedback.pipeline_support import (
    LabelledReader,
    Topology,
    create_topics,
    progress,
    start_joiner,
    stop,
    write_requests,
)
from tests.fixtures.kafka import quick_kafka_settings


def settings(state: Path, **kw: object) -> JoinerSettings:
    return JoinerSettings.model_validate({"partitions": 2, "state_dir": state, **kw})


def log_calls(log: EventLog, s: JoinerSettings, start: int, n: int) -> set[str]:
    """``n`` graph calls on the request log, each with its truth; the example ids to be labelled."""
    producer = log.producer()
    for i in range(start, start + n):
        rid = f"req-{i}"
        for ev in chain_events(rid, [[float(i)]], [float(i)]):
            producer.send(s.request_log_topic, ev.payload, headers=ev.headers())
        producer.send(s.feedback_topic, TruthRecord(rid, 0, i + 0.5, 0.0).encode(), key=rid.encode())
    producer.flush()
    producer.close()
    return {f"req-{i}:0" for i in range(start, start + n)}


def labelled_ids(log: EventLog, s: JoinerSettings) -> list[str]:
    consumer = log.consumer("check", [s.labelled_topic])
    out = [e.example_id for r in consumer.poll(0, 100_000) for e in decode_labelled(r.value)]
    consumer.close()
    return out


def run(joiner: Joiner, steps: int = 20) -> None:
    for _ in range(steps):
        joiner.step(0.0)


def joined_and_checkpointed(log: EventLog, s: JoinerSettings, start: int, n: int) -> set[str]:
    """A joiner that labels ``n`` calls and checkpoints (its snapshots hold their offsets), then stops."""
    joiner = Joiner(log, s)
    expected = log_calls(log, s, start, n)
    run(joiner)
    joiner.checkpoint()
    joiner.close()
    assert set(labelled_ids(log, s)) == expected
    return expected


def snapshot_files(state: Path) -> list[Path]:
    return sorted(state.rglob("*.snapshot"))


def test_a_snapshot_of_one_embedded_log_restored_against_another_stops_the_joiner_naming_both(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path / "state")
    first = EmbeddedEventLog(tmp_path / "a" / "eventlog")
    joined_and_checkpointed(first, s, 0, 20)
    before = {p: p.read_bytes() for p in snapshot_files(tmp_path / "state")}
    second = EmbeddedEventLog(tmp_path / "b" / "eventlog")
    joiner = Joiner(second, s)  # creates the topics
    log_calls(second, s, 100, 40)  # more records than the first log: its offsets would fit, and skip
    with pytest.raises(SnapshotSourceError) as refused:
        run(joiner)
    joiner.close()
    message = str(refused.value)
    assert first.identity() in message and second.identity() in message
    assert "they differ in log" in message and "DRIFTLOOP_JOINER_RESET_STATE=true" in message
    assert "DRIFTLOOP_JOINER_STATE_DIR" in message
    assert labelled_ids(second, s) == []  # nothing joined from the second log with the first's state
    assert {p: p.read_bytes() for p in snapshot_files(tmp_path / "state")} == before  # left as it was
    first.close()
    second.close()


def test_the_same_path_created_again_is_another_log(tmp_path: Path) -> None:
    s = settings(tmp_path / "state")
    first = EmbeddedEventLog(tmp_path / "home" / "eventlog")
    joined_and_checkpointed(first, s, 0, 20)
    old_identity = first.identity()
    first.close()
    shutil.rmtree(tmp_path / "home")
    again = EmbeddedEventLog(tmp_path / "home" / "eventlog")
    joiner = Joiner(again, s)
    log_calls(again, s, 100, 40)
    with pytest.raises(SnapshotSourceError, match="they differ in log") as refused:
        run(joiner)
    joiner.close()
    assert old_identity in str(refused.value) and again.identity() in str(refused.value)
    again.close()


def test_with_reset_state_snapshots_of_another_log_are_moved_aside_and_no_input_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path / "state")
    first = EmbeddedEventLog(tmp_path / "a" / "eventlog")
    joined_and_checkpointed(first, s, 0, 20)
    taken = snapshot_files(tmp_path / "state")
    second = EmbeddedEventLog(tmp_path / "b" / "eventlog")
    joiner = Joiner(second, settings(tmp_path / "state", reset_state=True))
    expected = log_calls(second, s, 100, 40)
    with caplog.at_level(logging.WARNING):
        run(joiner)
    joiner.checkpoint()
    joiner.close()
    ids = labelled_ids(second, s)
    assert sorted(ids) == sorted(expected)  # every call of the second log, once: nothing skipped
    discarded = joiner.request.stats.discarded_snapshots + joiner.asset.stats.discarded_snapshots
    assert discarded == len(taken) == 4  # request and asset stage, two shards each
    text = generate_latest(joiner.registry()).decode()
    assert 'driftloop_joiner_discarded_snapshots_total{stage="request"} 2.0' in text
    assert 'driftloop_joiner_discarded_snapshots_total{stage="asset"} 2.0' in text
    assert all(p.with_name(p.name + ".discarded").is_file() for p in taken)
    warnings = [r.getMessage() for r in caplog.records if "discarded snapshot" in r.getMessage()]
    assert len(warnings) == 4 and all(first.identity() in w for w in warnings)
    # The shards' new snapshots are bound to the second log: a restart without the option resumes.
    restarted = Joiner(second, s)
    more = log_calls(second, s, 200, 10)
    run(restarted)
    restarted.checkpoint()
    restarted.close()
    assert sorted(labelled_ids(second, s)) == sorted(expected | more)
    first.close()
    second.close()


def test_a_restart_against_the_same_log_resumes_from_its_bound_snapshots(tmp_path: Path) -> None:
    log = EmbeddedEventLog(tmp_path / "eventlog")
    s = settings(tmp_path / "state")
    expected = joined_and_checkpointed(log, s, 0, 20)
    joiner = Joiner(log, s)
    for p in (0, 1):
        saved = joiner.request.snapshots.load("request", p)
        assert saved is not None and saved["source"] == joiner.request.source(p).as_dict()
        assert saved["source"]["log"] == log.identity()
    expected |= log_calls(log, s, 20, 20)
    run(joiner)
    joiner.checkpoint()
    joiner.close()
    ids = labelled_ids(log, s)
    assert sorted(ids) == sorted(expected)  # resumed at the snapshots' offsets: no repeat, no gap
    log.close()


def test_snapshots_taken_for_other_topics_stop_the_joiner(tmp_path: Path) -> None:
    log = MemoryEventLog()
    s = settings(tmp_path / "state")
    joined_and_checkpointed(log, s, 0, 10)
    renamed = settings(tmp_path / "state", feedback_topic="feedback.v2")
    joiner = Joiner(log, renamed)
    with pytest.raises(SnapshotSourceError, match="they differ in topics") as refused:
        run(joiner)
    joiner.close()
    assert "driftloop.feedback" in str(refused.value) and "feedback.v2" in str(refused.value)


def as_format_1(state: Path) -> list[Path]:
    """Rewrite every snapshot as the previous version wrote it: format 1, no source."""
    files = snapshot_files(state)
    for path in files:
        payload = pickle.loads(path.read_bytes())
        del payload["source"]
        payload["format"] = 1
        path.write_bytes(pickle.dumps(payload))
    return files


def test_a_format_1_snapshot_is_adopted_where_the_log_vouches_for_it_and_bound_at_the_next_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = EmbeddedEventLog(tmp_path / "eventlog")
    s = settings(tmp_path / "state")
    expected = joined_and_checkpointed(log, s, 0, 20)
    files = as_format_1(tmp_path / "state")
    expected |= log_calls(log, s, 20, 20)
    joiner = Joiner(log, s)
    with caplog.at_level(logging.WARNING):
        run(joiner)
    joiner.checkpoint()
    joiner.close()
    assert sorted(labelled_ids(log, s)) == sorted(expected)  # resumed: no repeat, no gap
    assert len([r for r in caplog.records if "had no source; adopted" in r.getMessage()]) == len(files)
    for path in files:
        payload = pickle.loads(path.read_bytes())
        assert payload["format"] == 2 and payload["source"]["log"] == log.identity()
    log.close()


def test_a_format_1_snapshot_against_another_log_stops_the_joiner(tmp_path: Path) -> None:
    s = settings(tmp_path / "state")
    first = EmbeddedEventLog(tmp_path / "a" / "eventlog")
    joined_and_checkpointed(first, s, 0, 20)
    as_format_1(tmp_path / "state")
    second = EmbeddedEventLog(tmp_path / "b" / "eventlog")
    joiner = Joiner(second, s)
    log_calls(second, s, 100, 40)
    with pytest.raises(SnapshotSourceError, match="earlier driftloop that did not record its source"):
        run(joiner)
    joiner.close()
    assert labelled_ids(second, s) == []
    first.close()
    second.close()


SOURCE = StateSource(
    log="embedded:/x#1", group="g-request", topics=("keyed", "feedback"), partitions=2, partition=0
)
TP = TopicPartition("keyed", 0)


@pytest.mark.parametrize(
    ("recorded", "offset", "end", "committed", "problem"),
    [
        (SOURCE, 5, 9, None, None),  # bound to this source: committed offsets do not matter
        (SOURCE, 9, 9, 9, None),
        (SOURCE, 10, 9, 9, "lies past the end of that partition (9)"),  # the topic was created again
        (None, 5, 9, 5, None),  # format 1, committed at the snapshot's offset: adopted
        (None, 5, 9, 3, None),  # format 1, killed between writing the snapshot and committing it
        (None, 5, 9, None, "has no committed offset for keyed[0]"),
        (None, 5, 9, 7, "has committed offset 7 for keyed[0]"),
        (None, 10, 9, 10, "lies past the end"),
    ],
)
def test_source_problem(
    recorded: StateSource | None, offset: int, end: int, committed: int | None, problem: str | None
) -> None:
    saved = {"source": recorded.as_dict() if recorded else None, "offsets": {TP: offset}}
    found = source_problem(saved, SOURCE, lambda tp: end, lambda tp: committed)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_source_problem_names_what_differs_and_what_it_cannot_read() -> None:
    other = StateSource("kafka:cluster=abc", "g-request", ("keyed", "feedback"), 4, 0)
    found = source_problem({"source": other.as_dict(), "offsets": {}}, SOURCE, lambda tp: 0, lambda tp: 0)
    assert found is not None and "they differ in log, partitions" in found
    assert "kafka:cluster=abc" in found and "embedded:/x#1" in found
    odd = {"log": "x"}
    found = source_problem({"source": odd, "offsets": {}}, SOURCE, lambda tp: 0, lambda tp: 0)
    assert found is not None and "cannot read" in found
    legacy_other_topic = {"source": None, "offsets": {TopicPartition("gone", 0): 1}}
    found = source_problem(legacy_other_topic, SOURCE, lambda tp: 9, lambda tp: 1)
    assert found is not None and "topic 'gone'" in found


@pytest.mark.integration
def test_a_joiner_moved_from_the_embedded_log_to_kafka_with_the_same_home_refuses_then_resets(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The issue's reproduction: a joiner process ran on the embedded default; the same
    DRIFTLOOP_HOME then pointed at a real Kafka broker. The joiner exits naming both logs; with
    DRIFTLOOP_JOINER_RESET_STATE=true it labels every call on Kafka."""
    topo = Topology()
    home = {"DRIFTLOOP_HOME": str(tmp_path / "home"), **topo.env()}
    embedded = EmbeddedEventLog(tmp_path / "home" / "eventlog")
    kafka = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        create_topics(embedded, topo)
        expected = write_requests(embedded, topo, 0, 60)
        reader = LabelledReader(embedded, topo.topic("labelled"))
        joiner = start_joiner(home, tmp_path / "embedded.log")
        try:
            reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=120)
        finally:
            stop(joiner)  # SIGTERM: a last checkpoint writes the snapshots
            reader.close()
        assert set(reader.examples) == expected, progress(tmp_path / "embedded.log")
        assert snapshot_files(tmp_path / "home" / "feedback" / "joiner")

        on_kafka = {
            **home,
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "6",
            "DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S": "0.5",
            "DRIFTLOOP_KAFKA_LINGER_MS": "0",
        }
        create_topics(kafka, topo)
        expected = write_requests(kafka, topo, 1000, 120)  # more records: the old offsets would fit
        refused = start_joiner(on_kafka, tmp_path / "kafka-refused.log")
        try:
            code = refused.wait(timeout=120)
        finally:
            stop(refused)
        output = (tmp_path / "kafka-refused.log").read_text(errors="replace")
        assert code != 0, output[-3000:]
        assert "does not belong to the log and topics this joiner reads" in output, output[-3000:]
        assert embedded.identity() in output and kafka.identity() in output
        assert "DRIFTLOOP_JOINER_RESET_STATE=true" in output

        reader = LabelledReader(kafka, topo.topic("labelled"))
        joiner = start_joiner({**on_kafka, "DRIFTLOOP_JOINER_RESET_STATE": "true"}, tmp_path / "kafka.log")
        try:
            reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=200)
            time.sleep(1.0)
            reader.read_until(lambda: False, timeout_s=1.0)
        finally:
            stop(joiner)
            reader.close()
        assert set(reader.examples) == expected, progress(tmp_path / "kafka.log")
        assert "discarded snapshot" in (tmp_path / "kafka.log").read_text(errors="replace")
    finally:
        kafka.close()
        embedded.close()
