"""The NAB bench's counting (``bench/nab.py``): flags grouped into alarms, a window detected when an alarm
starts inside it, false alarms per week of data outside the windows; and its core (forecast, the
product's outlier detector and drift monitor) on a small synthetic series with one injected fault."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench.nab import (
    WEEK_S,
    Settings,
    forecast_table,
    group_alarms,
    live_flags,
    rows_at_log_times,
    run,
    tally,
)
from driftloop.cli.demo_loop import Progress
from driftloop.cli.replay_live import LiveOptions, _send
from driftloop.replay.delay import LabelDelay
from driftloop.replay.prequential import ReplayPlan, initial_model

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


def test_a_log_time_falls_on_the_last_row_of_the_last_call_sent_at_or_before_it() -> None:
    timeline = [[100, 110, 10.0, 10.05], [110, 120, 10.1, 10.15], [120, 125, 10.2, 10.3]]
    rows = rows_at_log_times(timeline, [9.0, 10.0, 10.07, 10.1, 10.19, 10.25, 99.0])
    # before the first call: its first row; a call's log time (sent..answered, or just after) its last
    assert rows.tolist() == [100, 109, 109, 119, 119, 124, 124]
    assert rows_at_log_times([], [1.0]).tolist() == [0]


def test_live_drift_verdicts_become_flags_on_the_row_their_window_ends() -> None:
    start, n = 100, 400
    timeline = [
        [a, a + 10, 1000.0 + (a - start) / 100, 1000.0 + (a - start + 5) / 100] for a in range(start, n, 10)
    ]
    verdicts = [
        {"verdict": "drift", "model_version": "1", "window_end": 1000.0 + 195 / 100, "outlier_alarm": None},
        {
            "verdict": "no_drift",
            "model_version": "1",
            "window_end": 1000.0 + 295 / 100,
            "outlier_alarm": True,
        },
        {
            "verdict": "drift",
            "model_version": "2",
            "window_end": 1000.0 + 299.9 / 100,
            "outlier_alarm": False,
        },
    ]
    report: dict[str, Any] = {"live": {"call_timeline": timeline, "drift_verdicts": verdicts}}
    flags, by_version = live_flags(report, start, n)
    assert np.flatnonzero(flags["drift"]).tolist() == [199, 299]  # rows 299 and 399, less start
    # a verdict's outlier_alarm is not an alarm: the alarms come from driftloop.alarms (none given here)
    assert not flags["outlier"].any()
    assert np.flatnonzero(flags["either"]).tolist() == [199, 299]
    assert by_version == {"1": 1, "2": 1}


class _Loop(http.server.BaseHTTPRequestHandler):
    """A stand-in for the loop's ingress and feedback API on 127.0.0.1 (real HTTP, answers only)."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/v2/models/infer"):
            rows = body["inputs"][0]["shape"][0]
            answer: dict[str, Any] = {
                "model_version": "1",
                "outputs": [{"name": "prediction", "data": [0.0] * rows}],
            }
        else:
            answer = {"accepted": sum(len(r["truth"]) for r in body["records"])}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Seldon-Puid", uuid.uuid4().hex)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_the_live_replay_records_each_calls_rows_and_wall_times(tmp_path: Path) -> None:
    """The link the bench maps the monitor's events (log times) back to rows with."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Loop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        session = SimpleNamespace(ingress=f"{url}/seldon/replay/replay", api=url, auth={})
        session.show = session.check = lambda: None
        values = np.arange(60, dtype=float)
        table = forecast_table(values, horizon=2)
        plan = ReplayPlan(LabelDelay(rows=2), train_fraction=0.5, label_lags=2)
        init = initial_model(table, plan)
        ticks = iter(float(t) for t in range(1000, 2000))
        served = _send(
            session,
            table,
            init,
            None,
            LiveOptions(tmp_path, rows_per_call=10),
            Progress(),
            time.monotonic,
            wall=lambda: next(ticks),
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert init.start == 29
    assert served.calls == 3 and served.failed == 0
    # [first row, end row, sent at, answered at]: each call's own rows, sent before it was answered
    assert served.timeline == [[29, 39, 1000.0, 1001.0], [39, 49, 1002.0, 1003.0], [49, 58, 1004.0, 1005.0]]
