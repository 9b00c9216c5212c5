"""The NAB bench's live outlier alarms (``bench/nab.py``): each outlier-rate alarm read from
``driftloop.alarms`` flags the row of the call whose log time decided it, counted by the library part's
``tally``; alarms from before the run (a shared topic) are left out and counted."""

from __future__ import annotations

from typing import Any

import numpy as np
from driftloop_feedback.monitor.alarms import OUTLIER_RATE, Alarm
from driftloop_feedback.monitor.verdict import DriftVerdict

from bench.nab import REFRACTORY, alarm_rows, live_flags, outlier_summary, tally

START, N = 100, 2100
# calls of 10 rows, 10 ms apart from t = 1000 s: row r is sent at 1000 + (r - START) / 1000
TIMELINE = [
    [a, a + 10, 1000.0 + (a - START) / 1000, 1000.0 + (a - START + 5) / 1000] for a in range(START, N, 10)
]


def alarm(at_s: float, kind: str = OUTLIER_RATE, window: str = "main/1/0") -> Alarm:
    return Alarm(
        alarm_id=f"{window}/{kind}", kind=kind, window_id=window, predictor="main", model_version="1",
        test="binomial", alpha=0.001, base_rate=0.025, count=14, rows=120, tested_rows=200,
        critical_count=14, p_value=1e-4, at_ms=round(at_s * 1000), raised_at=0.0,
    )  # fmt: skip


def test_an_alarm_flags_the_row_of_the_call_that_decided_it() -> None:
    alarms = [alarm(1000.1052), alarm(1001.5), alarm(999.0), alarm(1000.5, kind="other")]
    rows, left_out = alarm_rows(alarms, TIMELINE)
    # 100.52 ms after the first call: the call sent at 100 ms (rows 200..209) was logged; its last row
    assert rows.tolist() == [209, 1609]
    assert left_out == 2  # before the run's first call, and not an outlier-rate alarm
    report: dict[str, Any] = {"live": {"call_timeline": TIMELINE, "drift_verdicts": []}}
    flags, _ = live_flags(report, START, N, alarms)
    assert np.flatnonzero(flags["outlier"]).tolist() == [209 - START, 1609 - START]
    assert np.array_equal(flags["either"], flags["outlier"])


def test_live_alarms_are_counted_as_the_library_part_counts_flags() -> None:
    times = np.arange(N - START) * 300.0
    windows = [(times[50], times[150]), (times[1400], times[1600])]
    report: dict[str, Any] = {"live": {"call_timeline": TIMELINE, "drift_verdicts": []}}
    # rows 209 and 219 (one alarm: 219 is within the refractory period), 1609 (window 2), 1909 (false)
    at = [1000.1052, 1000.1155, 1001.5052, 1001.8052]
    flags, _ = live_flags(report, START, N, [alarm(t) for t in at])
    counted = tally(flags["outlier"], times, windows, REFRACTORY)
    assert counted.alarms == [109, 1509, 1809]  # scored rows
    assert counted.detected == [1, 2] and counted.false_alarms == 1


def test_the_summary_states_the_flag_share_the_monitor_counted_and_the_alarms() -> None:
    events = [
        DriftVerdict.from_json(
            b'{"window_id": "main/1/%d", "predictor": "main", "model_version": "1", "window_start": 0,'
            b' "window_end": 1, "rows": 200, "closed_on": "rows", "verdict": "no_drift", "is_drift": false,'
            b' "test": "scipy-ks", "correction": "bonferroni", "alpha": 0.05, "outlier_rate": 0.05,'
            b' "outliers": %d, "flagged_rows": 200}' % (i, k)
        )
        for i, k in ((0, 10), (1, 2))
    ]
    text = outlier_summary([alarm(1000.1052), alarm(999.0)], events, TIMELINE)
    assert "12 of 400 rows" in text and "(3.00%" in text
    assert "1 outlier-rate alarms" in text and "1 from before the run left out" in text
