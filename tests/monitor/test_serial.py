"""serial=ar1: KS p-values at an effective sample size n(1-r)/(1+r) from each feature's lag-1
autocorrelation. Over many seeds, through ``judge`` with a version's detector: on stationary AR(1) rows
the textbook test flags most windows and ar1 stays at alpha; a level shift is still found; independent
rows keep (nearly) the detector's own p-values. Then lag1 / decide by hand, the verdict's JSON, and the
setting that is refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.references import VersionDetectors
from driftloop_feedback.monitor.serial import MAX_LAG1, decide, effective_rows, ks_p_values, lag1
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.verdict import DriftVerdict, judge
from driftloop_feedback.monitor.verdict import TestSpec as Spec
from driftloop_feedback.monitor.windows import ClosedWindow
from driftloop_feedback.monitor.worker import DriftMonitor
from pydantic import ValidationError
from scipy.signal import lfilter

from driftloop.eventlog import MemoryEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, reference

PHI = 0.9
FEATURES = 3
REFERENCE_ROWS = 2000
WINDOW_ROWS = 500
ALPHA = 0.05
SEEDS = 200


def ar1_rows(rng: np.random.Generator, n: int, phi: float = PHI, features: int = FEATURES) -> np.ndarray:
    """A stationary AR(1) series x_t = phi x_(t-1) + e_t, e ~ N(0, 1), started from the stationary law
    N(0, 1 / (1 - phi^2)); one independent series per column, rows in time order."""
    start = rng.normal(size=features) / math.sqrt(1.0 - phi**2)
    out, _ = lfilter([1.0], [1.0, -phi], rng.normal(size=(n, features)), axis=0, zi=(phi * start)[None, :])
    return np.asarray(out, dtype=np.float64)


def stationary_sd(phi: float = PHI) -> float:
    return 1.0 / math.sqrt(1.0 - phi**2)


def window(x: np.ndarray, version: str = "1") -> ClosedWindow:
    return ClosedWindow(
        predictor="default",
        model_version=version,
        seq=0,
        opened_at=0.0,
        closed_at=0.0,
        first_ms=0,
        last_ms=len(x),
        features=np.ascontiguousarray(x, dtype=np.float64),
        outliers=0,
        flagged_rows=0,
        closed_on="rows",
    )


def detectors(ref: np.ndarray, kind: str, correction: str = "bonferroni") -> VersionDetectors:
    options: dict[str, object] = {"p_val": ALPHA}
    if kind.startswith("alibi"):
        options["correction"] = correction
    return VersionDetectors(
        DictReferences({"1": reference(ref)}), kind=kind, options=options, clock=FakeClock()
    )


def spec(kind: str, serial: str, correction: str = "bonferroni") -> Spec:
    return Spec(kind, correction, ALPHA, 50, None, serial)


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n)


@pytest.mark.parametrize("kind", ["scipy-ks", "alibi-ks"])
def test_false_alarms_on_stationary_ar1_rows_stay_at_alpha_only_with_ar1(kind: str) -> None:
    """Each seed: a fresh reference (2000 rows in time order) and the 500 rows after it, all of one
    stationary AR(1) process (phi 0.9): nothing changed, every alarm is false."""
    alarms = {"independent": 0, "ar1": 0}
    for seed in range(SEEDS):
        rows = ar1_rows(np.random.default_rng(seed), REFERENCE_ROWS + WINDOW_ROWS)
        found = detectors(rows[:REFERENCE_ROWS], kind)
        w = window(rows[REFERENCE_ROWS:])
        for serial in alarms:
            v = judge(w, found, spec(kind, serial))
            assert v.verdict in ("drift", "no_drift"), v.reason
            alarms[serial] += bool(v.is_drift)
            if serial == "ar1":
                assert v.serial == "ar1" and v.effective_rows is not None
                assert v.reference_effective_rows is not None
                assert all(e < 0.2 * WINDOW_ROWS for e in v.effective_rows.values()), v.effective_rows
            else:
                assert v.serial is None and v.effective_rows is None
    shares = {serial: n / SEEDS for serial, n in alarms.items()}
    assert shares["independent"] > 3 * ALPHA, f"{kind}: the textbook test is not fooled: {shares}"
    assert shares["ar1"] <= ALPHA + 3 * standard_error(ALPHA, SEEDS), f"{kind}: {shares}"


def test_ar1_still_finds_a_level_shift_of_three_standard_deviations() -> None:
    seeds = 60
    found_shift = 0
    for seed in range(seeds):
        rows = ar1_rows(np.random.default_rng(1000 + seed), REFERENCE_ROWS + WINDOW_ROWS)
        rows[REFERENCE_ROWS:, 1] += 3.0 * stationary_sd()  # one feature's level moves
        v = judge(
            window(rows[REFERENCE_ROWS:]),
            detectors(rows[:REFERENCE_ROWS], "scipy-ks"),
            spec("scipy-ks", "ar1"),
        )
        assert v.serial == "ar1"
        found_shift += bool(v.is_drift)
    assert found_shift / seeds >= 0.9, f"ar1 found the shift in {found_shift} of {seeds} seeds"


def test_on_independent_rows_ar1_keeps_the_detectors_p_values() -> None:
    seeds = 100
    agree = 0
    ratios: list[float] = []
    reference_ratios: list[float] = []
    clipped_differences: list[float] = []
    for seed in range(seeds):
        rows = np.random.default_rng(2000 + seed).normal(size=(REFERENCE_ROWS + WINDOW_ROWS, FEATURES))
        found = detectors(rows[:REFERENCE_ROWS], "scipy-ks")
        w = window(rows[REFERENCE_ROWS:])
        own = judge(w, found, spec("scipy-ks", "independent"))
        ar1 = judge(w, found, spec("scipy-ks", "ar1"))
        agree += own.is_drift == ar1.is_drift
        assert ar1.effective_rows is not None and ar1.reference_effective_rows is not None
        for name, e in ar1.effective_rows.items():
            ratios.append(e / WINDOW_ROWS)
            reference_ratios.append(ar1.reference_effective_rows[name] / REFERENCE_ROWS)
            p_ar1, p_own = ar1.p_values[name], own.p_values[name]
            assert p_ar1 is not None and p_own is not None
            assert p_ar1 >= 0.95 * p_own, f"seed {seed} {name}: ar1 {p_ar1} < the detector's {p_own}"
            if e == WINDOW_ROWS and ar1.reference_effective_rows[name] == REFERENCE_ROWS:
                clipped_differences.append(abs(p_ar1 - p_own))
    assert agree >= 0.95 * seeds, f"decisions agree on {agree} of {seeds} seeds"
    assert np.median(ratios) >= 0.98 and np.mean(ratios) >= 0.95 and min(ratios) >= 0.7, ratios
    assert np.mean(reference_ratios) >= 0.97
    # r < 0 is clipped to 0: about half the features keep exactly n rows, with the detector's p-value
    assert np.mean(np.asarray(ratios) == 1.0) >= 0.3
    assert len(clipped_differences) >= 0.1 * seeds and max(clipped_differences) < 0.005


def test_lag1_clips_to_zero_and_max() -> None:
    rng = np.random.default_rng(5)
    alternating = np.where(np.arange(200) % 2 == 0, 1.0, -1.0) + rng.normal(0, 0.1, 200)
    persistent = ar1_rows(rng, 5000, features=1)[:, 0]
    assert list(lag1(np.column_stack([alternating, np.zeros(200)]))) == [0.0, 0.0]  # r < 0; all zeros
    assert lag1(persistent[:, None])[0] == pytest.approx(PHI, abs=0.03)
    assert lag1(np.column_stack([np.arange(10_000, dtype=float)]))[0] == MAX_LAG1  # a trend: r > 0.99
    assert list(lag1(np.array([[1.0, 2.0], [3.0, 1.0]]))) == [0.0, 0.0]  # fewer than 3 rows
    assert lag1(np.empty((0, 2))).shape == (2,)
    np.testing.assert_allclose(
        effective_rows(500, np.array([0.0, 0.9, MAX_LAG1])), [500, 500 * 0.1 / 1.9, 500 * 0.01 / 1.99]
    )
    assert effective_rows(3, np.array([MAX_LAG1]))[0] == 1.0  # at least one row


@pytest.mark.parametrize(("value", "rows"), [(0.0, 500), (1.0, 500), (4.2, 500), (4.2, 50), (-3.7, 500)])
def test_lag1_of_a_constant_column_is_zero(value: float, rows: int) -> None:
    """A constant column carries no serial dependence to correct for (lag1's docstring: 0). Its mean is
    rounded, so the centred column is a run of equal tiny residues, whose lag-1 ratio is about 1."""
    assert lag1(np.full((rows, 2), value)).tolist() == [0.0, 0.0]


def test_a_stuck_sensor_still_drifts_under_ar1() -> None:
    """A sensor stuck at one reading (4.2) in the window, the reference its usual noise around 4: KS
    distance about 0.58, drift for the detector; ar1 must not credit the constant column with r = 0.99
    (2.5 effective rows of 500) and hide it."""
    rng = np.random.default_rng(9)
    ref = rng.normal(4.0, 1.0, (REFERENCE_ROWS, FEATURES))
    rows = rng.normal(4.0, 1.0, (WINDOW_ROWS, FEATURES))
    rows[:, 0] = 4.2
    found = detectors(ref, "scipy-ks")
    own = judge(window(rows), found, spec("scipy-ks", "independent"))
    assert own.verdict == "drift"
    v = judge(window(rows), found, spec("scipy-ks", "ar1"))
    assert v.verdict == "drift", (v.p_values, v.effective_rows)
    assert v.effective_rows is not None and v.effective_rows["x0"] == WINDOW_ROWS


def test_ks_p_values_are_the_asymptotic_kolmogorov_tail() -> None:
    from scipy import stats

    # independent samples: the asymptotic p-value of ks_2samp's statistic is close to scipy's
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=2000), rng.normal(0.1, 1, 500)
    res = stats.ks_2samp(a, b)
    (p,) = ks_p_values(np.array([res.statistic]), np.array([500.0]), np.array([2000.0]))
    assert p == pytest.approx(res.pvalue, rel=0.05)
    # fewer effective rows: the same distance is less surprising
    (p_few,) = ks_p_values(np.array([0.1]), np.array([50.0]), np.array([2000.0]))
    (p_many,) = ks_p_values(np.array([0.1]), np.array([500.0]), np.array([2000.0]))
    assert p_many < 0.05 < p_few
    # the reference's size unknown (a fallback detector): the window's size alone, as an endless reference
    (p_window_only,) = ks_p_values(np.array([0.1]), np.array([50.0]), None)
    (p_endless,) = ks_p_values(np.array([0.1]), np.array([50.0]), np.array([1e12]))
    assert p_window_only == pytest.approx(p_endless) and p_window_only < p_few


def test_decide_bonferroni_and_benjamini_hochberg_by_hand() -> None:
    p = np.array([0.001, 0.02, 0.03, 0.5])
    assert decide(p, 0.1, "bonferroni") == (True, pytest.approx(0.025))
    assert decide(p, 0.1, "fdr") == (True, pytest.approx(0.075))  # k = 3: 0.03 <= 3 x 0.1 / 4
    step_up = np.array([0.09, 0.03, 0.06, 0.04])  # none below 0.025; BH: all four, cutoff 0.1
    assert decide(step_up, 0.1, "bonferroni") == (False, pytest.approx(0.025))
    assert decide(step_up, 0.1, "fdr") == (True, pytest.approx(0.1))
    assert decide(np.array([0.2, 0.3, 0.4, 0.5]), 0.1, "fdr") == (False, pytest.approx(0.025))
    assert decide(np.array([0.02]), 0.05, "fdr") == (True, pytest.approx(0.05))


def test_fdr_correction_reaches_the_ar1_decision() -> None:
    """alibi with correction=fdr: the ar1 decision and threshold are Benjamini-Hochberg's."""
    rows = ar1_rows(np.random.default_rng(7), REFERENCE_ROWS + WINDOW_ROWS)
    rows[REFERENCE_ROWS:] += 3.0 * stationary_sd()  # every feature moves: BH's cutoff is 3 x alpha / 3
    v = judge(
        window(rows[REFERENCE_ROWS:]),
        detectors(rows[:REFERENCE_ROWS], "alibi-ks", "fdr"),
        spec("alibi-ks", "ar1", "fdr"),
    )
    assert (v.serial, v.correction, v.verdict) == ("ar1", "fdr", "drift")
    p = np.array([v.p_values[n] for n in ("x0", "x1", "x2")], dtype=np.float64)
    assert (True, v.threshold) == decide(p, ALPHA, "fdr")
    assert v.threshold == pytest.approx(ALPHA)  # Bonferroni's would be ALPHA / 3


def test_the_verdict_json_carries_serial_and_effective_rows() -> None:
    rows = ar1_rows(np.random.default_rng(8), REFERENCE_ROWS + WINDOW_ROWS)
    v = judge(
        window(rows[REFERENCE_ROWS:]), detectors(rows[:REFERENCE_ROWS], "scipy-ks"), spec("scipy-ks", "ar1")
    )
    back = DriftVerdict.from_json(v.to_json())
    assert back == v
    assert back.serial == "ar1"
    assert back.effective_rows is not None and set(back.effective_rows) == {"x0", "x1", "x2"}
    assert back.reference_effective_rows is not None and set(back.reference_effective_rows) == {
        "x0",
        "x1",
        "x2",
    }
    # phi 0.9: about n (1 - 0.9) / 1.9 effective rows
    for e in back.effective_rows.values():
        assert 0.5 * WINDOW_ROWS / 19 < e < 2 * WINDOW_ROWS / 19
    for e in back.reference_effective_rows.values():
        assert 0.7 * REFERENCE_ROWS / 19 < e < 1.4 * REFERENCE_ROWS / 19
    # the same window judged as independent rows: no serial fields, in the JSON too
    plain = DriftVerdict.from_json(
        judge(
            window(rows[REFERENCE_ROWS:]),
            detectors(rows[:REFERENCE_ROWS], "scipy-ks"),
            spec("scipy-ks", "independent"),
        ).to_json()
    )
    assert (plain.serial, plain.effective_rows, plain.reference_effective_rows) == (None, None, None)


def test_ar1_with_cvm_is_refused_with_the_setting_to_change() -> None:
    with pytest.raises(ValidationError, match="DRIFTLOOP_MONITOR_TEST"):
        MonitorSettings(serial="ar1", test="cvm")
    assert MonitorSettings(serial="ar1", test="ks").serial == "ar1"
    assert MonitorSettings(serial="independent", test="cvm").test == "cvm"


def test_the_monitor_takes_serial_from_its_environment_and_its_events_carry_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DRIFTLOOP_MONITOR_SERIAL reaches the monitor's judge: the same AR(1) rows served through the
    request log (one partition: read in the order served) drift in most windows as independent rows and
    in none with ar1, and the drift topic's events say which."""
    rows = ar1_rows(np.random.default_rng(12), REFERENCE_ROWS + 3 * WINDOW_ROWS)
    monkeypatch.setenv("DRIFTLOOP_MONITOR_BACKEND", "permissive")
    events: dict[str, list[DriftVerdict]] = {}
    for serial in ("independent", "ar1"):
        monkeypatch.setenv("DRIFTLOOP_MONITOR_SERIAL", serial)
        settings = MonitorSettings(window_rows=WINDOW_ROWS)
        log = MemoryEventLog()
        log.create_topic("seldon", 1)
        writer = RequestLogWriter(log.producer(), 1)
        refs = DictReferences({"1": reference(rows[:REFERENCE_ROWS])})
        monitor = DriftMonitor(log, settings, refs, state_dir=tmp_path / serial, clock=FakeClock())
        writer.calls(rows[REFERENCE_ROWS:], rows_per_call=10, prefix="s", start_ms=0, step_ms=1)
        while monitor.step(0) or monitor.records_read < 4 * 3 * WINDOW_ROWS // 10:
            pass
        monitor.checkpoint()
        consumer = log.consumer("reader", [settings.drift_topic])
        events[serial] = [DriftVerdict.from_json(r.value) for r in consumer.poll(0, 100)]
        monitor.close()
    assert [len(e) for e in events.values()] == [3, 3]
    assert sum(bool(v.is_drift) for v in events["independent"]) >= 2
    assert {v.serial for v in events["independent"]} == {None}
    assert [(v.serial, v.verdict) for v in events["ar1"]] == [("ar1", "no_drift")] * 3
    assert all(v.effective_rows is not None and len(v.effective_rows) == FEATURES for v in events["ar1"])
