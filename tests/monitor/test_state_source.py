"""The monitor's state is bound to its source: a state taken from another log is refused, naming both,
or with DRIFTLOOP_MONITOR_RESET_STATE moved aside (reading from this log's committed offsets)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.errors import MonitorStateSourceError
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.worker import DriftMonitor

from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(3)
REFS = DictReferences({"4": reference(RNG.normal(0, 1, (500, 3)), ["load", "speed", "temp"])})


def settings(**extra: object) -> MonitorSettings:
    return MonitorSettings(backend="permissive", window_rows=10_000, window_s=3600.0, min_rows=50, **extra)


def log_with(path: Path, rows: int, prefix: str) -> tuple[EmbeddedEventLog, RequestLogWriter]:
    log = EmbeddedEventLog(path)
    log.create_topic("seldon", 2)
    writer = RequestLogWriter(log.producer(), 2)
    writer.calls(RNG.normal(0, 1, (rows, 3)), rows_per_call=5, prefix=prefix, start_ms=1_000, version="4")
    return log, writer


def read_all(monitor: DriftMonitor, records: int) -> None:
    for _ in range(200):
        monitor.step(0.05)
        if monitor.records_read >= records:
            return
    raise AssertionError(f"read {monitor.records_read} of {records} records")


def test_a_state_taken_from_another_log_is_refused_or_reset(tmp_path: Path) -> None:
    state_dir = tmp_path / "monitor"
    a, _ = log_with(tmp_path / "a", 150, "a")
    first = DriftMonitor(a, settings(), REFS, state_dir=state_dir, clock=FakeClock())
    read_all(first, 60)  # 30 calls: a request and a response each
    first.checkpoint()
    first.close()
    assert first.windows.open_rows == 150

    # log b: 50 rows read and committed by the group (its own state elsewhere), then 40 more
    b, writer_b = log_with(tmp_path / "b", 50, "b")
    own = DriftMonitor(b, settings(), REFS, state_dir=tmp_path / "own", clock=FakeClock())
    read_all(own, 20)
    own.checkpoint()
    own.close()
    writer_b.calls(RNG.normal(0, 1, (40, 3)), rows_per_call=5, prefix="c", start_ms=5_000, version="4")

    with pytest.raises(MonitorStateSourceError) as refused:
        DriftMonitor(b, settings(), REFS, state_dir=state_dir, clock=FakeClock())
    message = str(refused.value)
    assert a.identity() in message and b.identity() in message
    assert "DRIFTLOOP_MONITOR_RESET_STATE" in message
    assert (state_dir / "monitor.snapshot").exists()  # refused: left as it was

    reset = DriftMonitor(b, settings(reset_state=True), REFS, state_dir=state_dir, clock=FakeClock())
    assert reset.windows.open_rows == 0 and (state_dir / "monitor.snapshot.discarded").exists()
    read_all(reset, 16)
    assert reset.windows.open_rows == 40  # from b's committed offsets: the 40 rows after them
    reset.checkpoint()
    reset.close()
    again = DriftMonitor(b, settings(), REFS, state_dir=state_dir, clock=FakeClock())  # now bound to b
    assert again.windows.open_rows == 40
    again.close()
    a.close()
    b.close()


def test_a_state_without_source_is_adopted_only_where_the_log_vouches_for_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "monitor"
    a, _ = log_with(tmp_path / "a", 50, "a")
    first = DriftMonitor(a, settings(), REFS, state_dir=state_dir, clock=FakeClock())
    read_all(first, 20)
    first.checkpoint()
    first.close()
    path = state_dir / "monitor.snapshot"
    payload = pickle.loads(path.read_bytes())
    del payload["source"]
    path.write_bytes(pickle.dumps({**payload, "format": 1}))  # as the previous version wrote it

    b, _ = log_with(tmp_path / "b", 50, "b")
    with pytest.raises(MonitorStateSourceError, match="did not record its source"):
        DriftMonitor(b, settings(), REFS, state_dir=state_dir, clock=FakeClock())
    adopted = DriftMonitor(a, settings(), REFS, state_dir=state_dir, clock=FakeClock())
    assert adopted.windows.open_rows == 50
    adopted.close()
    a.close()
    b.close()
