"""The outlier-rate alarm (``monitor/alarms.py``): the exact binomial critical count, the stated
false-alarm rate over many seeds, detection of a raised flag rate at the row that decides it, a window
closed on time tested with its own row count, once per window across a restart, and the alarm event and
verdict fields the monitor writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from driftloop_feedback.monitor.alarms import (
    Alarm,
    OutlierRateTest,
    binomial_p_value,
    critical_count,
)
from driftloop_feedback.monitor.pairing import ModelCall
from driftloop_feedback.monitor.settings import TRAINER_OUTLIER_BASE_RATE, MonitorSettings
from driftloop_feedback.monitor.windows import ClosedWindow, WindowBook
from driftloop_feedback.monitor.worker import DriftMonitor
from prometheus_client import generate_latest
from scipy import stats

from driftloop.eventlog import MemoryEventLog
from tests.monitor.streams import DictReferences, FakeClock, RequestLogWriter, call_events, reference


@pytest.mark.parametrize(("n", "p0", "alpha"), [(500, 0.025, 0.001), (500, 0.005, 0.01), (60, 0.1, 0.05)])
def test_the_critical_count_is_the_smallest_with_tail_at_most_alpha(n: int, p0: float, alpha: float) -> None:
    c = critical_count(n, p0, alpha)
    assert stats.binom.sf(c - 1, n, p0) <= alpha < stats.binom.sf(c - 2, n, p0)
    assert binomial_p_value(c, n, p0) == pytest.approx(stats.binom.sf(c - 1, n, p0))


def test_too_few_rows_to_decide_never_alarm() -> None:
    assert critical_count(3, 0.025, 1e-9) == 4  # even 3 of 3 flagged is more likely than alpha


def test_the_default_base_rate_is_the_trainers_flag_rate() -> None:
    """Trimmed reference rows (flagged) plus the share above the threshold quantile of the rest."""
    from driftloop.learning.training import TrainingSettings

    t = TrainingSettings()
    rate = t.outlier_reference_trim + (1 - t.outlier_reference_trim) * (1 - t.outlier_threshold_quantile)
    assert MonitorSettings().outlier_base_rate == TRAINER_OUTLIER_BASE_RATE
    assert rate <= TRAINER_OUTLIER_BASE_RATE < rate + 0.001


def _book(test: OutlierRateTest) -> WindowBook:
    return WindowBook(window_rows=test.window_rows, window_s=1e9, outlier_test=test)


def _feed(book: WindowBook, flags: np.ndarray, rows_per_call: int, start_ms: int = 0) -> None:
    for i in range(0, len(flags), rows_per_call):
        chunk = flags[i : i + rows_per_call]
        call = ModelCall(f"r{start_ms + i}", "p", "1", np.zeros((len(chunk), 1)), chunk, start_ms + i)
        book.add(call, now=0.0)


def test_false_alarms_per_window_stay_at_the_stated_alpha_over_many_seeds() -> None:
    """Rows flagged independently at the base rate: the share of windows that alarm is the test's exact
    size, at most alpha (checked over 40 seeds x 100 windows)."""
    test = OutlierRateTest(base_rate=0.025, alpha=0.01, window_rows=500)
    size = binomial_p_value(test.full_window_critical, 500, 0.025)  # the exact false-alarm probability
    assert size <= test.alpha
    alarms = windows = 0
    for seed in range(40):
        book = _book(test)
        _feed(book, np.random.default_rng(seed).random(100 * 500) < test.base_rate, rows_per_call=100)
        alarms += len(book.take_alarms())
        windows += 100
    sd = np.sqrt(size * (1 - size) / windows)
    assert abs(alarms / windows - size) < 4 * sd, (alarms, windows, size)
    assert alarms / windows <= test.alpha + 4 * sd


def test_a_raised_flag_rate_alarms_at_the_row_that_reaches_the_critical_count() -> None:
    test = OutlierRateTest(base_rate=0.025, alpha=0.001, window_rows=500)
    c = test.full_window_critical
    rng = np.random.default_rng(7)
    calm = rng.random(1000) < test.base_rate
    shifted = rng.random(1000) < 4 * test.base_rate  # the machine starts to misbehave
    flags = np.concatenate([calm, shifted])
    book = _book(test)
    _feed(book, flags, rows_per_call=7)
    (alarm,) = book.take_alarms()[:1]
    first = np.flatnonzero(np.cumsum(flags[1000:1500]) >= c)[0]  # the row of window 2 that reaches c
    assert alarm.window_id == "p/1/2"
    assert (alarm.count, alarm.rows, alarm.tested_rows, alarm.critical_count) == (c, first + 1, 500, c)
    assert alarm.rows < 500, "decided before the window is full"
    assert alarm.at_ms == ((1000 + first) // 7) * 7  # the call holding that row (calls of 7 rows)
    assert alarm.p_value == pytest.approx(stats.binom.sf(c - 1, 500, 0.025)) and alarm.p_value <= 0.001
    assert (alarm.test, alarm.alpha, alarm.base_rate) == ("binomial", 0.001, 0.025)


def test_one_alarm_per_window_even_when_every_row_is_flagged() -> None:
    test = OutlierRateTest(base_rate=0.025, alpha=0.001, window_rows=500)
    book = _book(test)
    _feed(book, np.ones(1500, dtype=bool), rows_per_call=10)
    assert [a.window_id for a in book.take_alarms()] == ["p/1/0", "p/1/1", "p/1/2"]
    assert book.take_alarms() == []


def test_a_window_closed_on_time_is_tested_with_its_own_row_count() -> None:
    test = OutlierRateTest(base_rate=0.025, alpha=0.001, window_rows=500)
    book = WindowBook(window_rows=500, window_s=60.0, outlier_test=test)
    c100 = test.critical(100)
    assert c100 < test.full_window_critical
    flags = np.zeros(100, dtype=bool)
    flags[:c100] = True
    _feed(book, flags, rows_per_call=10)
    assert book.take_alarms() == []  # below the full window's critical count
    (closed,) = book.tick(now=60.0)
    (alarm,) = book.take_alarms()
    assert (alarm.count, alarm.rows, alarm.tested_rows, alarm.critical_count) == (c100, 100, 100, c100)
    assert closed.alarm_rows == 100


def test_a_restart_does_not_raise_the_same_windows_alarm_again() -> None:
    test = OutlierRateTest(base_rate=0.025, alpha=0.001, window_rows=500)
    book = _book(test)
    _feed(book, np.ones(100, dtype=bool), rows_per_call=10)
    assert len(book.take_alarms()) == 1
    again = _book(test)
    again.restore(book.snapshot())
    _feed(again, np.ones(100, dtype=bool), rows_per_call=10, start_ms=100)
    assert again.take_alarms() == []
    closed = _feed_to_close(again)
    assert closed.alarm_rows == test.full_window_critical


def _feed_to_close(book: WindowBook) -> ClosedWindow:
    call = ModelCall("last", "p", "1", np.zeros((300, 1)), np.zeros(300, dtype=bool), 10_000)
    (closed,) = book.add(call, now=0.0)
    return closed


def test_the_monitor_writes_the_alarm_event_and_the_windows_outlier_test(tmp_path: Path) -> None:
    log = MemoryEventLog()
    log.create_topic("seldon", 1)
    writer = RequestLogWriter(log.producer(), 1)
    rng = np.random.default_rng(0)
    refs = DictReferences({"1": reference(rng.normal(size=(1000, 2)))})
    settings = MonitorSettings(backend="permissive", window_rows=100, min_rows=50)
    c = settings.outlier_test().full_window_critical
    flags = np.zeros(100, dtype=bool)
    flags[50 : 50 + c] = True  # the run reaches the critical count at row 50 + c
    rows = rng.normal(size=(100, 2))
    for i in range(10):
        writer.write(
            call_events(f"a-{i}", rows[i * 10 : i * 10 + 10], flags=flags[i * 10 : i * 10 + 10].tolist()), i
        )
    monitor = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=FakeClock())
    (judged,) = monitor.step(0)
    monitor.checkpoint()
    (raw,) = log.consumer("reader", ["driftloop.alarms"]).poll(0, 100)
    assert raw.key == b"default"
    alarm = Alarm.from_json(raw.value)
    assert (alarm.alarm_id, alarm.kind, alarm.test) == (
        "default/1/0/outlier_rate",
        "outlier_rate",
        "binomial",
    )
    assert (alarm.count, alarm.rows, alarm.tested_rows, alarm.alpha, alarm.base_rate) == (
        c,
        50 + c,
        100,
        0.001,
        0.025,
    )
    assert alarm.at_ms == (50 + c - 1) // 10  # the call holding the deciding row
    (raw_verdict,) = log.consumer("r2", ["driftloop.drift"]).poll(0, 100)
    v = orjson.loads(raw_verdict.value)
    assert (v["outliers"], v["flagged_rows"], v["outlier_critical"], v["outlier_alarm"]) == (c, 100, c, True)
    assert v["outlier_test"] == "binomial" and v["outlier_p_value"] == pytest.approx(alarm.p_value)
    assert judged.verdict.outlier_alarm is True
    text = generate_latest(monitor.metrics.registry).decode()
    assert (
        'driftloop_monitor_alarms_total{kind="outlier_rate",model_version="1",predictor="default"} 1.0'
        in text
    )


def test_a_window_below_the_critical_count_says_so(tmp_path: Path) -> None:
    log = MemoryEventLog()
    log.create_topic("seldon", 1)
    writer = RequestLogWriter(log.producer(), 1)
    rng = np.random.default_rng(1)
    refs = DictReferences({"1": reference(rng.normal(size=(1000, 2)))})
    settings = MonitorSettings(backend="permissive", window_rows=100, min_rows=50)
    flags = [True, True] + [False] * 8  # 2 of 100 (the first call): the base rate is 2.5
    writer.write(call_events("a-0", rng.normal(size=(10, 2)), flags=flags), 0)
    writer.calls(rng.normal(size=(90, 2)), rows_per_call=10, prefix="b", start_ms=1)
    monitor = DriftMonitor(log, settings, refs, state_dir=tmp_path / "monitor", clock=FakeClock())
    (judged,) = monitor.step(0)
    v = judged.verdict
    assert (v.outliers, v.flagged_rows, v.outlier_alarm) == (2, 100, False)
    assert v.outlier_p_value == pytest.approx(stats.binom.sf(1, 100, 0.025))
    assert monitor.windows.take_alarms() == []
    assert log.consumer("reader", ["driftloop.alarms"]).poll(0, 100) == []
