"""The NAB bench's counting (``bench/nab.py``): flags grouped into alarms, a window detected when an alarm
starts inside it, false alarms per week of data outside the windows; and its core (forecast, the
product's outlier detector and drift monitor) on a small synthetic series with one injected fault."""

from __future__ import annotations

import numpy as np
import pytest

from bench.nab import WEEK_S, Settings, group_alarms, run, tally

STEP = 300.0  # 5 min


def test_flags_within_the_refractory_period_of_an_alarms_start_are_that_alarm() -> None:
    flags = np.zeros(1000, dtype=bool)
    flags[[10, 20, 297, 298, 700]] = True
    assert group_alarms(flags, 288) == [10, 298, 700]  # 20 and 297 belong to 10's alarm; 298 is 288 on
    assert group_alarms(flags, 300) == [10, 700]
    assert group_alarms(np.zeros(5, dtype=bool), 288) == []


def test_a_detector_flagging_every_row_raises_one_alarm_per_refractory_period() -> None:
    assert group_alarms(np.ones(1000, dtype=bool), 288) == [0, 288, 576, 864]


def test_detected_windows_false_alarms_and_their_rate_per_week() -> None:
    n = 4 * 2016  # four weeks of 5-min rows
    times = np.arange(n) * STEP
    windows = [(times[1000], times[1287]), (times[5000], times[5287]), (times[7000], times[7100])]
    flags = np.zeros(n, dtype=bool)
    flags[[100, 150]] = True  # one false alarm (150 continues 100's alarm)
    flags[[1100, 1120]] = True  # window 1: an alarm starts inside it
    flags[[4990, 5010]] = True  # starts 10 rows before window 2 and goes on into it: a false alarm
    flags[3000] = True  # a false alarm
    flags[7100] = True  # window 3's last row counts as inside
    result = tally(flags, times, windows, refractory=288)
    assert result.alarms == [100, 1100, 3000, 4990, 7100]
    assert result.detected == [1, 3]
    assert result.false_alarms == 3
    outside_rows = n - 288 - 288 - 101
    assert result.weeks_outside == pytest.approx(outside_rows * STEP / WEEK_S)
    assert result.per_week == pytest.approx(3 / (outside_rows * STEP / WEEK_S))


def test_window_membership_follows_each_rows_own_time_when_time_steps_back() -> None:
    times = np.arange(600) * STEP
    times[400:] -= 100 * STEP  # the clock steps back: rows 400..599 repeat the times of rows 300..499
    windows = [(times[350], times[360])]
    flags = np.zeros(600, dtype=bool)
    flags[455] = True  # in file order after the window's rows, but its own time is inside the window
    result = tally(flags, times, windows, refractory=288)
    assert result.detected == [1]
    assert result.false_alarms == 0


def synthetic(days: int, fault: tuple[int, int], seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A daily temperature cycle with noise; inside ``fault`` (rows) the machine runs away."""
    rng = np.random.default_rng(seed)
    n = days * 288
    t = np.arange(n)
    values = 80 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, n)
    a, b = fault
    values[a:b] = 80 + np.cumsum(rng.normal(-0.4, 3.0, b - a))  # a falling, erratic run
    return values, t * STEP + 1.7e9


def test_the_core_flags_an_injected_fault_window_through_the_products_components() -> None:
    values, times = synthetic(days=12, fault=(8 * 288, 8 * 288 + 144))
    windows = [(times[8 * 288 - 36], times[8 * 288 + 144])]  # the fault with 3 h of lead time
    # the outlier threshold raised (the defaults flag ~5% of clean rows): the check is the counting
    outcome = run(
        values, times, windows, start=5 * 288, s=Settings(outlier_quantile=0.9999, outlier_trim=0.0)
    )
    assert outcome.start == 5 * 288
    assert outcome.scored == len(values) - 12 - 5 * 288
    assert outcome.drift_windows == outcome.scored // 500
    assert outcome.tallies["outlier"].detected == [1]
    assert outcome.tallies["either"].detected == [1]
    for t in outcome.tallies.values():
        assert t.per_week == pytest.approx(t.false_alarms / t.weeks_outside)
    metrics = outcome.evaluation.metrics()
    assert metrics["loop"]["mae"] is not None and metrics["baseline"]["mae"] is not None
