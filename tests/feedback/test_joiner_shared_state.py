"""Issue 16: a joiner replica killed mid-stream and started on another "node" (another working directory,
nothing of the first one's files) restores its shards from the shared state store
(``DRIFTLOOP_STATE_STORE=log``: a compacted Kafka topic) and labels every example, none twice.

The predictions of batch A are joined state only (their truth comes after the kill): the group has
committed offsets past them, so a replica that cannot read the first one's snapshots never labels them."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from driftloop_feedback.records import LabelledExample, TruthRecord

from driftloop.eventlog import EventLog
from driftloop.eventlog.kafka import KafkaEventLog
from driftloop.statestore.kafka_changelog import KafkaChangelogStore
from tests.feedback.helpers import chain_events
from tests.feedback.pipeline_support import (
    LabelledReader,
    Topology,
    create_topics,
    metrics_url,
    progress,
    start_joiner,
    stop,
    write_requests,
)
from tests.fixtures.kafka import quick_kafka_settings

pytestmark = pytest.mark.integration
ROWS = 2


class CountedExamples(dict[str, LabelledExample]):
    """``LabelledReader.examples``, counting how often each ``example_id`` was read."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def setdefault(self, key: str, default: LabelledExample) -> LabelledExample:
        self.counts[key] += 1
        return super().setdefault(key, default)


class CountingReader(LabelledReader):
    """The labelled topic as the trainer reads it, plus how often each example_id was written."""

    def __init__(self, log: EventLog, topic: str) -> None:
        super().__init__(log, topic)
        self.examples = self.counted = CountedExamples()

    @property
    def counts(self) -> Counter[str]:
        return self.counted.counts


def request_id(i: int) -> str:
    return str(uuid.UUID(int=i + 1))


def write_predictions(log: EventLog, topo: Topology, start: int, count: int) -> None:
    """Graph calls without any truth yet: they wait in the joiner's state."""
    producer = log.producer()
    for i in range(start, start + count):
        feats = [[float(i), float(r)] for r in range(ROWS)]
        for ev in chain_events(request_id(i), feats, [float(i) + r for r in range(ROWS)]):
            producer.send(topo.topic("request_log"), ev.payload, headers=ev.headers())
    producer.flush()
    producer.close()


def write_truths(log: EventLog, topo: Topology, start: int, count: int) -> set[str]:
    producer = log.producer()
    expected = set()
    for i in range(start, start + count):
        rid = request_id(i)
        for r in range(ROWS):
            truth = TruthRecord(rid, r, float(i) * 10 + r, time.time())
            producer.send(topo.topic("feedback"), truth.encode(), key=rid.encode())
            expected.add(f"{rid}:{r}")
    producer.flush()
    producer.close()
    return expected


def pending(url: str) -> float:
    lines = httpx.get(url, timeout=10).text.splitlines()
    return sum(
        float(ln.split()[-1]) for ln in lines if ln.startswith("driftloop_joiner_pending_predictions{")
    )


@pytest.fixture()
def kafka_log(kafka_bootstrap: str) -> Iterator[KafkaEventLog]:
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    try:
        yield log
    finally:
        log.close()


def test_joiner_killed_and_started_on_another_node_restores_its_state_from_the_log_store(
    kafka_log: KafkaEventLog, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topo = Topology()
    create_topics(kafka_log, topo)
    state_topic = f"state.{topo.suffix}"

    def node_env(node: str) -> dict[str, str]:
        return {
            **topo.env(),
            "DRIFTLOOP_HOME": str(tmp_path / node),  # each "node" has its own working directory
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "6",
            "DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S": "0.5",
            "DRIFTLOOP_KAFKA_LINGER_MS": "0",
            "DRIFTLOOP_STATE_STORE": "log",
            "DRIFTLOOP_STATE_TOPIC": state_topic,
            # small chunks: the snapshots span several records each
            "DRIFTLOOP_STATE_CHANGELOG_CHUNK_BYTES": "4096",
        }

    write_predictions(kafka_log, topo, 0, 150)  # batch A: state only, truth after the kill
    before = write_requests(kafka_log, topo, 150, 150)  # batch B: labelled before the kill
    reader = CountingReader(kafka_log, topo.topic("labelled"))
    node_a = tmp_path / "node-a.log"
    joiner = start_joiner(node_env("node-a"), node_a, "--metrics-port", "0")
    try:
        reader.read_until(lambda: len(reader.examples) >= len(before), timeout_s=200)
        assert set(reader.examples) == before, progress(node_a)
        url = metrics_url(node_a)
        waiting = 150 * ROWS + 75 * ROWS  # batch A, and B's calls without truth
        deadline = time.monotonic() + 60
        while pending(url) != waiting and time.monotonic() < deadline:
            time.sleep(0.3)
        assert pending(url) == waiting, progress(node_a)
        time.sleep(2.0)  # checkpoints every 0.3 s: batch A is in the stored snapshots, its offsets committed
        labelled_before = dict(reader.counts)
        expected = before | write_requests(kafka_log, topo, 300, 300)  # batch C, mid-stream at the kill
        reader.read_until(lambda: len(reader.examples) >= len(before) + 60, timeout_s=200)
        stop(joiner, signal.SIGKILL)
        assert not (tmp_path / "node-b").exists()
        expected |= write_truths(kafka_log, topo, 0, 150)  # batch A's truth: joined only from restored state
        expected |= write_requests(kafka_log, topo, 600, 100)
        node_b = tmp_path / "node-b.log"
        joiner = start_joiner(node_env("node-b"), node_b)
        reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=200)
        time.sleep(1.0)
        reader.read_until(lambda: False, timeout_s=2.0)  # anything extra would show up now
    finally:
        stop(joiner)
        reader.close()
    missing = expected - set(reader.examples)
    assert not missing, f"{len(missing)} examples lost, e.g. {sorted(missing)[:3]}: {progress(node_b)}"
    assert set(reader.examples) == expected
    assert reader.conflicts == []  # an example made again is byte-for-byte the same
    # What was labelled and checkpointed before the kill is not emitted again by the new replica.
    assert {e: reader.counts[e] for e in labelled_before} == labelled_before
    assert not (tmp_path / "node-b" / "feedback" / "joiner").exists()  # nothing stored on node b's disk
    scope = f"joiner/{topo.env()['DRIFTLOOP_JOINER_GROUP_ID']}/request"
    store = KafkaChangelogStore(kafka_log, state_topic, scope)
    try:
        stored = sorted(store.view.values)
    finally:
        store.close()
    assert stored == [f"request-{p:04d}.snapshot" for p in range(topo.partitions)]
    print(f"raw labelled records {reader.raw} for {len(expected)} examples; restored torn={store.view.torn}")
