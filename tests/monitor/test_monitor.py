"""The drift monitor on the in-memory event log: windows closed by count and by a fake clock, drift
found after the simulator's regime change within a bounded delay, false alarms at or below alpha on
stationary data, a restart that resumes its window, and the reference following the served version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.monitor.worker import DriftMonitor, JudgedWindow
from driftloop_servers.detectors import fit_drift_detector
from prometheus_client import generate_latest

from driftloop.eventlog import CommitFailedError, MemoryEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference, regime_pools

PARTITIONS = 3


def _settings(**kw: object) -> MonitorSettings:
    base: dict[str, object] = {"backend": "permissive", "window_rows": 500, "window_s": 60.0, "min_rows": 50}
    return MonitorSettings(**{**base, **kw})  # type: ignore[arg-type]


def _log(partitions: int = PARTITIONS) -> tuple[MemoryEventLog, RequestLogWriter]:
    """The request log, written as the local runtime does. With several partitions the monitor reads
    calls in poll order, not serving order (Seldon writes no key); one partition keeps serving order."""
    log = MemoryEventLog()
    log.create_topic("seldon", partitions)
    return log, RequestLogWriter(log.producer(), partitions)


def _drain(monitor: DriftMonitor) -> list[JudgedWindow]:
    """Step until a poll reads nothing."""
    out: list[JudgedWindow] = []
    while True:
        before = monitor.records_read
        out += monitor.step(poll_timeout_s=0)
        if monitor.records_read == before:
            return out


def _drift_events(log: MemoryEventLog) -> list[DriftVerdict]:
    consumer = log.consumer("reader", ["driftloop.drift"])
    return [DriftVerdict.from_json(r.value) for r in consumer.poll(0, 100_000)]


def _monitor(
    log: MemoryEventLog, refs: DictReferences, tmp_path: Path, clock: FakeClock, **kw: object
) -> DriftMonitor:
    return DriftMonitor(log, _settings(**kw), refs, state_dir=tmp_path / "monitor", clock=clock)


def test_a_window_closes_on_time_with_few_events(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    log, writer = _log()
    clock = FakeClock()
    refs = DictReferences({"1": reference(rng.normal(size=(1000, 3)))})
    monitor = _monitor(log, refs, tmp_path, clock, min_rows=20)
    writer.calls(
        rng.normal(size=(30, 3)), rows_per_call=10, prefix="a", start_ms=0, flags=[True] + [False] * 9
    )
    assert _drain(monitor) == []
    clock.advance(59.0)
    assert monitor.step(0) == []
    clock.advance(1.0)
    (judged,) = monitor.step(0)
    v = judged.verdict
    assert (v.verdict, v.rows, v.closed_on, v.is_drift) == ("no_drift", 30, "time", False)
    assert v.outlier_rate == pytest.approx(0.1)
    assert set(v.p_values) == {"x0", "x1", "x2"} and all(0 <= p <= 1 for p in v.p_values.values())
    assert v.test == "scipy-ks" and v.correction == "bonferroni" and v.alpha == 0.05
    assert v.threshold == pytest.approx(0.05 / 3)
    monitor.checkpoint()
    assert [e.window_id for e in _drift_events(log)] == ["default/1/0"]


def test_too_few_rows_is_a_verdict_and_counted(tmp_path: Path) -> None:
    log, writer = _log()
    clock = FakeClock()
    refs = DictReferences({"1": reference(np.random.default_rng(0).normal(size=(100, 2)))})
    monitor = _monitor(log, refs, tmp_path, clock, min_rows=50)
    writer.calls(np.zeros((5, 2)), rows_per_call=5, prefix="a", start_ms=0)
    _drain(monitor)
    clock.advance(60.0)
    (judged,) = monitor.step(0)
    assert (judged.verdict.verdict, judged.verdict.is_drift) == ("too_few_rows", None)
    assert "5 rows < min_rows 50" in (judged.verdict.reason or "")
    text = generate_latest(monitor.metrics.registry).decode()
    closed = 'driftloop_monitor_windows_closed_total{model_version="1",predictor="default",'
    assert closed + 'verdict="too_few_rows"} 1.0' in text


@pytest.mark.parametrize("seed", range(4))
def test_regime_change_is_detected_within_a_bounded_delay(tmp_path: Path, seed: int) -> None:
    pools = regime_pools(seed)
    rng = np.random.default_rng(100 + seed)
    change_at = 1250  # rows before the change: two full windows and half of the third
    before = pools.before[rng.choice(len(pools.before), change_at)]
    after = pools.after[rng.choice(len(pools.after), 1500)]
    log, writer = _log(partitions=1)
    refs = DictReferences({"1": reference(pools.reference, pools.feature_names)})
    monitor = _monitor(log, refs, tmp_path, FakeClock())
    writer.calls(np.vstack([before, after]), rows_per_call=5, prefix="s", start_ms=0, step_ms=1)
    verdicts = [j.verdict for j in _drain(monitor)]
    assert [v.rows for v in verdicts] == [500] * 5
    ends = np.cumsum([v.rows for v in verdicts])
    first_alarm = next(end for end, v in zip(ends, verdicts, strict=True) if v.is_drift and end > change_at)
    delay = int(first_alarm - change_at)  # rows served after the change until the window that fired closed
    assert delay <= 750, f"seed {seed}: drift found {delay} rows after the change ({pools.change_kinds})"
    assert all(v.is_drift for v in verdicts[3:]), "windows wholly after the change all fire"
    fired = verdicts[-1]
    assert min(p for p in fired.p_values.values() if p is not None) < fired.alpha / len(pools.feature_names)


def test_false_alarms_on_stationary_data_stay_at_or_below_alpha(tmp_path: Path) -> None:
    """Over fresh references and windows drawn from one regime (the rate alpha holds over reference
    draws: against one fixed reference it can be higher, see docs/drift-monitor.md)."""
    pools = regime_pools(0)
    stationary = np.vstack([pools.reference, pools.before])
    alarms = windows = 0
    for seed in range(40):
        rng = np.random.default_rng(200 + seed)
        rows = stationary[rng.choice(len(stationary), 2000 + 500 * 5)]
        log, writer = _log()
        refs = DictReferences({"1": reference(rows[:2000], pools.feature_names)})
        monitor = _monitor(log, refs, tmp_path / str(seed), FakeClock(), alpha=0.05)
        writer.calls(rows[2000:], rows_per_call=50, prefix="s", start_ms=0, step_ms=1)
        verdicts = [j.verdict for j in _drain(monitor)]
        assert len(verdicts) == 5 and {v.verdict for v in verdicts} <= {"drift", "no_drift"}
        alarms += sum(bool(v.is_drift) for v in verdicts)
        windows += len(verdicts)
    assert alarms / windows <= 0.05, f"{alarms} false alarms in {windows} windows"


def test_restart_resumes_its_window_without_double_counting(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = np.column_stack([np.arange(1200, dtype=float), rng.normal(size=1200)])  # column 0: row number
    refs = DictReferences(
        {"1": reference(np.column_stack([rng.uniform(0, 1200, 600), rng.normal(size=600)]))}
    )
    log, writer = _log()
    clock = FakeClock()
    first = _monitor(log, refs, tmp_path, clock, dedupe_memory=5)  # the offsets alone must do it
    writer.calls(rows[:300], rows_per_call=10, prefix="a", start_ms=0)
    assert _drain(first) == []
    first.checkpoint()  # 300 rows durable, offsets committed
    writer.calls(rows[300:400], rows_per_call=10, prefix="b", start_ms=0)
    assert _drain(first) == []
    # a checkpoint whose commit fails (e.g. a rebalance): the snapshot now covers more than the group
    first.consumer.commit = _refuse_commit  # type: ignore[method-assign]
    first.checkpoint()
    writer.calls(rows[400:450], rows_per_call=10, prefix="c", start_ms=0)
    assert _drain(first) == []  # read, never snapshotted: the crash loses them from memory
    first.consumer.close()  # the process dies here (no final checkpoint)

    second = _monitor(log, refs, tmp_path, clock, dedupe_memory=5)
    assert second.windows.open_rows == 400
    writer.calls(rows[450:1000], rows_per_call=10, prefix="d", start_ms=0)
    judged = _drain(second)
    assert [j.window.rows for j in judged] == [500, 500]
    served = np.concatenate([j.window.features[:, 0] for j in judged])
    assert sorted(served.tolist()) == list(range(1000)), "every row once, none twice"
    assert [j.verdict.window_id for j in judged] == ["default/1/0", "default/1/1"]
    text = generate_latest(second.metrics.registry).decode()
    assert 'driftloop_monitor_events_skipped_total{reason="already_in_state"}' in text


def _refuse_commit(offsets: object = None) -> None:
    raise CommitFailedError("group rebalanced (test)")


def test_the_reference_follows_the_served_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    refs = DictReferences(
        {"1": reference(rng.normal(0, 1, (1000, 2))), "2": reference(rng.normal(3, 1, (1000, 2)))}
    )
    log, writer = _log()
    monitor = _monitor(log, refs, tmp_path, FakeClock())
    shifted = rng.normal(3, 1, (1000, 2))  # the world after the change, which version 2 was trained on
    writer.calls(shifted[:500], rows_per_call=10, prefix="old", start_ms=0, version="1")
    writer.calls(shifted[500:], rows_per_call=10, prefix="new", start_ms=0, version="2")
    by_version = {j.verdict.model_version: j.verdict for j in _drain(monitor)}
    assert by_version["1"].verdict == "drift" and by_version["1"].reference == "model version 1 reference"
    assert by_version["2"].verdict == "no_drift" and by_version["2"].reference == "model version 2 reference"
    # a later champion (version 3) has its reference logged after the first window asked for it
    writer.calls(shifted[:500], rows_per_call=10, prefix="v3a", start_ms=0, version="3")
    (missing,) = _drain(monitor)
    assert missing.verdict.verdict == "no_reference" and "no fallback either" in (
        missing.verdict.reason or ""
    )
    refs.refs["3"] = reference(rng.normal(3, 1, (1000, 2)))
    monitor.clock.advance(61.0)  # type: ignore[attr-defined]
    writer.calls(shifted[500:], rows_per_call=10, prefix="v3b", start_ms=0, version="3")
    (found,) = _drain(monitor)
    assert (found.verdict.verdict, found.verdict.reference) == ("no_drift", "model version 3 reference")
    assert refs.lookups == 4  # one per version, plus the retry of 3: fitted detectors are cached


def test_a_version_without_reference_falls_back_to_the_champion_drift_detector(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    refs = DictReferences(fallback_detector=fit_drift_detector("scipy-ks", rng.normal(0, 1, (1000, 2))))
    log, writer = _log()
    monitor = _monitor(log, refs, tmp_path, FakeClock())
    writer.calls(rng.normal(3, 1, (500, 2)), rows_per_call=10, prefix="a", start_ms=0, version="9")
    (judged,) = _drain(monitor)
    v = judged.verdict
    assert v.verdict == "drift" and set(v.p_values) == {"f0", "f1"}
    assert v.reference is not None and v.reference.startswith("models:/pump-bearing-temp-drift/1 (fallback:")


def test_every_event_not_windowed_is_counted(tmp_path: Path) -> None:
    from driftloop.eventlog import send_many

    log, writer = _log()
    monitor = _monitor(log, DictReferences(), tmp_path, FakeClock(), pair_ttl_s=10.0)
    events = [e for i in range(3) for e in _events(f"r{i}")]
    writer.write(events)  # 3 calls
    writer.write(_events("r0"))  # Seldon's duplicates
    writer.write(_events("lonely")[:3])  # the model's response never comes
    send_many(log.producer(), "seldon", [(None, b"{}")], partition=0, headers=[[("type", b"x")]])
    _drain(monitor)
    monitor.clock.advance(11.0)  # type: ignore[attr-defined]
    monitor.step(0)
    text = generate_latest(monitor.metrics.registry).decode()
    for line in (
        'driftloop_monitor_events_skipped_total{reason="other_node"} 10.0',  # the outlier node
        'driftloop_monitor_events_skipped_total{reason="duplicate"} 2.0',
        'driftloop_monitor_events_skipped_total{reason="malformed"} 1.0',
        'driftloop_monitor_unpaired_total{reason="expired"} 1.0',
        'driftloop_monitor_rows_total{model_version="1",predictor="default"} 6.0',
    ):
        assert line in text


def _events(rid: str) -> list:  # type: ignore[type-arg]
    from tests.monitor.streams import call_events

    return call_events(rid, np.ones((2, 2)))
