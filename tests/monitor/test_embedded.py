"""The drift monitor on the embedded (on-disk) event log, with the request log written as the local
runtime writes it: keyless batches per partition, Seldon's headers, MLServer's JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.monitor.worker import DriftMonitor

from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference

pytestmark = pytest.mark.integration


def test_drift_events_reach_the_drift_topic_and_survive_a_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    log = EmbeddedEventLog(tmp_path / "eventlog")
    log.create_topic("seldon", 2)
    writer = RequestLogWriter(log.producer(), 2)
    refs = DictReferences({"4": reference(rng.normal(0, 1, (1000, 3)), ["load", "speed", "temp"])})
    settings = MonitorSettings(backend="permissive", window_rows=200, window_s=60.0, min_rows=50)
    clock = FakeClock()
    first = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=clock)
    writer.calls(rng.normal(0, 1, (150, 3)), rows_per_call=5, prefix="a", start_ms=1_000, version="4")
    while first.step(0.05) or first.records_read < 120:
        pass
    first.checkpoint()
    first.close()

    second = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=clock)
    assert second.windows.open_rows == 150
    flags = [True, False, False, False, False]
    writer.calls(
        rng.normal(2, 1, (250, 3)), rows_per_call=5, prefix="b", start_ms=2_000, version="4", flags=flags
    )
    judged = []
    while second.records_read < 200:
        judged += second.step(0.05)
    clock.advance(60.0)
    judged += second.step(0.05)
    second.checkpoint()
    assert [j.window.rows for j in judged] == [200, 200]
    consumer = log.consumer("reader", [settings.drift_topic])
    events = [DriftVerdict.from_json(r.value) for r in consumer.poll(1.0, 100)]
    assert [(e.window_id, e.verdict, e.rows) for e in events] == [
        ("default/4/0", "drift", 200),
        ("default/4/1", "drift", 200),
    ]
    assert events[1].outlier_rate == pytest.approx(0.2)
    assert set(events[0].p_values) == {"load", "speed", "temp"}
    second.close()
    log.close()
