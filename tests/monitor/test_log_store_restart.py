"""The drift monitor on Kafka with ``DRIFTLOOP_STATE_STORE=log``: a monitor that dies (no final
checkpoint) is replaced by one with another state folder (another node) that restores its open window
from the compacted state topic and counts every row once, none twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.worker import DriftMonitor, JudgedWindow

from driftloop.eventlog import CommitFailedError
from driftloop.eventlog.kafka import KafkaEventLog
from tests.fixtures.kafka import quick_kafka_settings
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference

pytestmark = pytest.mark.integration
PARTITIONS = 3


def drain_until(
    monitor: DriftMonitor, done: Callable[[list[JudgedWindow]], bool], timeout_s: float = 60
) -> list[JudgedWindow]:
    judged: list[JudgedWindow] = []
    deadline = time.monotonic() + timeout_s
    while not done(judged):
        assert time.monotonic() < deadline, f"open rows {monitor.windows.open_rows}, judged {len(judged)}"
        judged += monitor.step(poll_timeout_s=0.2)
    return judged


def refuse_commit(offsets: object = None) -> None:
    raise CommitFailedError("group rebalanced (test)")


def test_a_monitor_on_another_node_restores_its_window_from_the_log_store(
    tmp_path: Path, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("DRIFTLOOP_STATE_STORE", "log")
    monkeypatch.setenv("DRIFTLOOP_STATE_TOPIC", f"state.{suffix}")
    settings = MonitorSettings(
        backend="permissive",
        window_rows=500,
        window_s=60.0,
        min_rows=50,
        dedupe_memory=5,  # the restored offsets alone must keep rows from counting twice
        group_id=f"monitor-{suffix}",
        request_log_topic=f"seldon.{suffix}",
        drift_topic=f"drift.{suffix}",
        alarm_topic=f"alarms.{suffix}",
    )
    rng = np.random.default_rng(1)
    rows = np.column_stack([np.arange(1000, dtype=float), rng.normal(size=1000)])  # column 0: row number
    refs = DictReferences(
        {"1": reference(np.column_stack([rng.uniform(0, 1000, 600), rng.normal(size=600)]))}
    )
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    log.create_topic(settings.request_log_topic, PARTITIONS)
    producer = log.producer()
    writer = RequestLogWriter(producer, PARTITIONS, topic=settings.request_log_topic)
    clock = FakeClock()
    second: DriftMonitor | None = None
    try:
        first = DriftMonitor(log, settings, refs, state_dir=tmp_path / "node-a", clock=clock)
        writer.calls(rows[:300], rows_per_call=10, prefix="a", start_ms=0)
        drain_until(first, lambda _: first.windows.open_rows == 300)
        first.checkpoint()  # 300 rows stored, offsets committed
        writer.calls(rows[300:400], rows_per_call=10, prefix="b", start_ms=0)
        drain_until(first, lambda _: first.windows.open_rows == 400)
        monkeypatch.setattr(first.consumer, "commit", refuse_commit)
        first.checkpoint()  # stored, not committed: the state covers more than the group
        writer.calls(rows[400:450], rows_per_call=10, prefix="c", start_ms=0)
        drain_until(first, lambda _: first.windows.open_rows == 450)  # read, never stored
        first.close()  # the pod is gone (no final checkpoint)

        second = DriftMonitor(log, settings, refs, state_dir=tmp_path / "node-b", clock=clock)
        assert second.windows.open_rows == 400
        writer.calls(rows[450:1000], rows_per_call=10, prefix="d", start_ms=0)
        judged = drain_until(second, lambda j: sum(w.window.rows for w in j) >= 1000)
    finally:
        if second is not None:
            second.close()
        producer.close()
        log.close()
    assert [j.window.rows for j in judged] == [500, 500]
    served = np.concatenate([j.window.features[:, 0] for j in judged])
    assert sorted(served.tolist()) == list(range(1000)), "every row once, none twice"
    assert not (tmp_path / "node-b" / "monitor.snapshot").exists()  # nothing on the new node's disk
