"""reference=recent: a window tested against its predictor's last ``recent_rows`` rows. RecentRows by
hand; through ``judge`` a level that steps up once raises drift at the step only (against the version's
reference, in every window after it); and through the monitor on the embedded event log, the rows
survive a checkpoint and a restart."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.pairing import ModelCall
from driftloop_feedback.monitor.recent import RecentRows
from driftloop_feedback.monitor.references import VersionDetectors
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.verdict import DriftVerdict, judge
from driftloop_feedback.monitor.verdict import TestSpec as Spec
from driftloop_feedback.monitor.windows import ClosedWindow, WindowBook
from driftloop_feedback.monitor.worker import DriftMonitor, JudgedWindow

from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference


def _rows(start: int, n: int, width: int = 2) -> np.ndarray:
    """Rows whose first column is their number: order and identity can be read back."""
    return np.column_stack([np.arange(start, start + n, dtype=float)] + [np.zeros(n)] * (width - 1))


def test_no_reference_until_rows_then_the_newest_rows_in_order() -> None:
    recent = RecentRows(5)
    assert recent.reference("a", 2) is None and recent.held("a") == 0
    recent.add("a", _rows(0, 3))
    assert recent.reference("a", 2) is None and recent.held("a") == 3
    recent.add("a", _rows(3, 4))
    kept = recent.reference("a", 2)
    assert kept is not None and kept.dtype == np.float64
    np.testing.assert_array_equal(kept, _rows(2, 5))  # the newest 5 of 7, oldest first
    assert recent.reference("a", 3) is None  # asked for another width
    assert recent.reference("b", 2) is None  # per predictor
    recent.add("b", _rows(100, 6))
    np.testing.assert_array_equal(recent.reference("b", 2), _rows(101, 5))
    np.testing.assert_array_equal(recent.reference("a", 2), _rows(2, 5))
    # rows of another width replace what was kept, and must fill up again
    recent.add("a", _rows(50, 2, width=3))
    assert recent.held("a") == 2 and recent.reference("a", 2) is None and recent.reference("a", 3) is None
    recent.add("a", _rows(52, 4, width=3))
    np.testing.assert_array_equal(recent.reference("a", 3), _rows(51, 5, width=3))


def test_snapshot_restore_round_trip_and_a_smaller_setting_keeps_the_newest() -> None:
    recent = RecentRows(6)
    recent.add("a", _rows(0, 8))
    recent.add("b", _rows(100, 3))
    saved = pickle.loads(pickle.dumps(recent.snapshot()))  # the monitor's snapshot is pickled
    recent.add("a", _rows(8, 2))  # after the snapshot: not in it
    again = RecentRows(6)
    again.restore(saved)
    np.testing.assert_array_equal(again.reference("a", 2), _rows(2, 6))
    assert again.held("b") == 3 and again.reference("b", 2) is None
    again.add("b", _rows(103, 3))
    np.testing.assert_array_equal(again.reference("b", 2), _rows(100, 6))
    smaller = RecentRows(4)
    smaller.restore(saved)
    assert smaller.held("a") == 4
    np.testing.assert_array_equal(smaller.reference("a", 2), _rows(4, 4))
    larger = RecentRows(10)
    larger.restore(saved)
    assert larger.held("a") == 6 and larger.reference("a", 2) is None  # must fill up to 10 first
    empty = RecentRows(6)
    empty.add("a", _rows(0, 6))
    empty.restore(None)  # a snapshot of a monitor run with reference=version
    assert empty.held("a") == 0


WINDOW = 500
RECENT = 1000  # two windows
STEP_AT = 6  # the first window at the new level
ALPHA = 0.001  # a false alarm in 12 windows x 3 seeds would be rare: every verdict below is asserted
WINDOWS = 12


def _step_windows(seed: int) -> list[ClosedWindow]:
    """Windows of 3 independent N(level, 1) features whose level steps from 0 to 1 at window STEP_AT and
    stays there, windowed by a WindowBook as the monitor does."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(WINDOW * WINDOWS, 3))
    rows[WINDOW * STEP_AT :] += 1.0
    book = WindowBook(window_rows=WINDOW, window_s=1e9)
    closed: list[ClosedWindow] = []
    for start in range(0, len(rows), 50):
        closed += book.add(ModelCall("r", "default", "1", rows[start : start + 50], None, start), now=0.0)
    assert [w.rows for w in closed] == [WINDOW] * WINDOWS
    return closed


def _judge_all(
    windows: list[ClosedWindow], detectors: VersionDetectors, recent: RecentRows | None
) -> list[DriftVerdict]:
    """As the monitor's ``_emit``: the predictor's recent rows (if held), judge, then add the window."""
    spec = Spec("scipy-ks", "bonferroni", ALPHA, 50)
    out = []
    for w in windows:
        rows = None if recent is None else recent.reference(w.predictor, w.features.shape[1])
        out.append(judge(w, detectors, spec, rows))
        if recent is not None:
            recent.add(w.predictor, w.features)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_a_lasting_step_drifts_once_against_recent_rows_and_in_every_window_against_the_version(
    seed: int,
) -> None:
    windows = _step_windows(seed)
    ref = np.random.default_rng(100 + seed).normal(size=(2000, 3))
    detectors = VersionDetectors(
        DictReferences({"1": reference(ref)}), kind="scipy-ks", options={"p_val": ALPHA}, clock=FakeClock()
    )
    version = _judge_all(windows, detectors, None)
    assert [v.is_drift for v in version] == [False] * STEP_AT + [True] * (WINDOWS - STEP_AT)
    assert {v.reference for v in version} == {"model version 1 reference"}

    recent = RecentRows(RECENT)
    against_recent = _judge_all(windows, detectors, recent)
    before_full = RECENT // WINDOW
    assert [v.reference for v in against_recent[:before_full]] == ["model version 1 reference"] * before_full
    assert {v.reference for v in against_recent[before_full:]} == {
        "the last 1000 rows of predictor 'default' before this window"
    }
    assert {v.reference_rows for v in against_recent[before_full:]} == {RECENT}
    drifted = [i for i, v in enumerate(against_recent) if v.is_drift]
    # the window at the step, and the next one (its reference: one window before the step, one after);
    # from then on the new level is the reference: no drift
    assert drifted == [STEP_AT, STEP_AT + 1], drifted
    assert recent.held("default") == RECENT
    np.testing.assert_array_equal(
        recent.reference("default", 3), np.vstack([w.features for w in windows[-2:]])
    )


def test_recent_rows_with_ar1_take_the_recent_rows_effective_size() -> None:
    windows = _step_windows(7)
    detectors = VersionDetectors(
        DictReferences({"1": reference(np.random.default_rng(8).normal(size=(2000, 3)))}),
        kind="scipy-ks",
        options={"p_val": ALPHA},
        clock=FakeClock(),
    )
    recent = RecentRows(RECENT)
    for w in windows[:2]:
        recent.add(w.predictor, w.features)
    v = judge(
        windows[2],
        detectors,
        Spec("scipy-ks", "bonferroni", ALPHA, 50, None, "ar1"),
        recent.reference("default", 3),
    )
    assert (v.serial, v.reference_rows, v.verdict) == ("ar1", RECENT, "no_drift")
    assert v.reference_effective_rows is not None
    assert all(0.8 * RECENT <= e <= RECENT for e in v.reference_effective_rows.values())


# -- the monitor on the embedded event log -----------------------------------------------------------


def _drain_until(monitor: DriftMonitor, windows: int, timeout_s: float = 30.0) -> list[JudgedWindow]:
    judged: list[JudgedWindow] = []
    deadline = time.monotonic() + timeout_s
    while len(judged) < windows:
        assert time.monotonic() < deadline, f"{len(judged)} of {windows} windows judged"
        judged += monitor.step(0.05)
    return judged


@pytest.mark.integration
def test_the_monitors_recent_rows_survive_a_checkpoint_and_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "BACKEND": "permissive",
        "REFERENCE": "recent",
        "RECENT_ROWS": "400",
        "WINDOW_ROWS": "200",
        "MIN_ROWS": "50",
    }.items():
        monkeypatch.setenv(f"DRIFTLOOP_MONITOR_{name}", value)
    settings = MonitorSettings()
    assert (settings.reference, settings.recent_rows) == ("recent", 400)
    rng = np.random.default_rng(11)
    log = EmbeddedEventLog(tmp_path / "eventlog")
    log.create_topic("seldon", 1)  # one partition: the rows are read in the order served
    writer = RequestLogWriter(log.producer(), 1)
    refs = DictReferences({"4": reference(rng.normal(0, 1, (1000, 3)), ["load", "speed", "temp"])})
    clock = FakeClock()
    first = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=clock)
    served = rng.normal(0, 1, (1000, 3))
    writer.calls(served, rows_per_call=10, prefix="a", start_ms=1_000, version="4")
    judged = _drain_until(first, 5)
    assert [j.verdict.reference for j in judged] == ["model version 4 reference"] * 2 + [
        "the last 400 rows of predictor 'default' before this window"
    ] * 3
    assert first.recent is not None and first.recent.held("default") == 400
    np.testing.assert_array_equal(first.recent.reference("default", 3), served[600:])
    first.checkpoint()
    first.close()

    second = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=clock)
    assert second.recent is not None and second.recent.held("default") == 400
    np.testing.assert_array_equal(second.recent.reference("default", 3), served[600:])
    writer.calls(rng.normal(3, 1, (200, 3)), rows_per_call=10, prefix="b", start_ms=2_000, version="4")
    (after,) = _drain_until(second, 1)
    v = after.verdict
    assert v.reference == "the last 400 rows of predictor 'default' before this window"
    assert (v.reference_rows, v.verdict, v.window_id) == (400, "drift", "default/4/5")
    second.checkpoint()
    events = [
        DriftVerdict.from_json(r.value) for r in log.consumer("reader", [settings.drift_topic]).poll(1.0, 100)
    ]
    assert [e.reference_rows for e in events] == [1000, 1000, 400, 400, 400, 400]
    second.close()
    log.close()
