"""The joiner as real subprocesses against a real Kafka broker and the embedded log: every prediction
whose truth arrives is labelled exactly once in the trainer's (deduplicated) view, across SIGKILL and
with two joiners in one group."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from driftloop.eventlog import EventLog
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.kafka import KafkaEventLog
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


@pytest.fixture(params=["kafka", "embedded"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[EventLog, dict[str, str]]]:
    env = {"DRIFTLOOP_HOME": str(tmp_path / "home")}
    if request.param == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        env.update(
            DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S="6",
            DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S="0.5",
            DRIFTLOOP_KAFKA_LINGER_MS="0",
        )
        log: EventLog = KafkaEventLog(bootstrap, quick_kafka_settings())
    else:
        log = EmbeddedEventLog(tmp_path / "home" / "eventlog")
    try:
        yield log, env
    finally:
        log.close()


def test_sigkill_mid_stream_then_restart_labels_every_example_once(
    backend: tuple[EventLog, dict[str, str]], tmp_path: Path
) -> None:
    log, env = backend
    topo = Topology()
    create_topics(log, topo)
    env = {**env, **topo.env()}
    expected = write_requests(log, topo, 0, 300)
    reader = LabelledReader(log, topo.topic("labelled"))
    joiner = start_joiner(env, tmp_path / "joiner.log")
    try:
        reader.read_until(lambda: len(reader.examples) >= 100, timeout_s=200)
        assert len(reader.examples) >= 100, progress(tmp_path / "joiner.log")
        stop(joiner, signal.SIGKILL)  # mid-stream: more input is still unread or unflushed
        expected |= write_requests(log, topo, 300, 300)
        joiner = start_joiner(env, tmp_path / "joiner.log")
        reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=200)
        time.sleep(1.0)
        reader.read_until(lambda: False, timeout_s=1.0)  # anything extra would show up now
    finally:
        stop(joiner)
        reader.close()
    assert set(reader.examples) == expected, progress(tmp_path / "joiner.log")
    assert reader.conflicts == []  # a replayed example is byte-for-byte the same example
    example = reader.examples[next(iter(sorted(expected)))]
    assert example.truth == example.features[0] * 10 + example.row
    print(f"raw labelled records {reader.raw} for {len(expected)} examples")


def test_two_joiners_in_one_group_produce_the_same_labelled_set(
    backend: tuple[EventLog, dict[str, str]], tmp_path: Path
) -> None:
    log, env = backend
    topo = Topology()
    create_topics(log, topo)
    env = {**env, **topo.env()}
    joiners = [
        start_joiner(env, tmp_path / "joiner-0.log", "--metrics-port", "0"),
        start_joiner(env, tmp_path / "joiner-1.log"),
    ]
    reader = LabelledReader(log, topo.topic("labelled"))
    try:
        expected = write_requests(log, topo, 0, 400)
        reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=200)
        assert all(j.poll() is None for j in joiners), "a joiner died"
        url = metrics_url(tmp_path / "joiner-0.log")
        # Lag figures refresh at each checkpoint (every 2 s by default): wait until they show caught up.
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = httpx.get(url, timeout=10).text
            except httpx.ConnectError as exc:  # say which joiner is gone and what it wrote last
                logs = [(tmp_path / f"joiner-{i}.log").read_text(errors="replace")[-2000:] for i in (0, 1)]
                codes = [j.poll() for j in joiners]
                raise AssertionError(f"joiner 0's /metrics: {exc}; exit codes {codes}; logs {logs}") from exc
            lag_lines = [ln for ln in metrics.splitlines() if ln.startswith("driftloop_joiner_consumer_lag{")]
            if (lag_lines and all(ln.endswith(" 0.0") for ln in lag_lines)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for j in joiners:
            stop(j)
        reader.close()
    assert set(reader.examples) == expected
    assert reader.conflicts == []
    assert lag_lines and all(line.endswith(" 0.0") for line in lag_lines), metrics
    assert 'driftloop_joiner_events_total{outcome="joined",stage="request"}' in metrics
