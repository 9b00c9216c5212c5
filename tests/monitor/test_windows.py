"""Windows bounded by count and time, on a fake clock."""

from __future__ import annotations

import numpy as np
from driftloop_feedback.monitor.pairing import ModelCall
from driftloop_feedback.monitor.windows import WindowBook


def _call(
    rows: np.ndarray, event_ms: int = 0, version: str = "1", flags: list[bool] | None = None
) -> ModelCall:
    f = None if flags is None else np.asarray(flags)
    return ModelCall("r", "default", version, rows, f, event_ms)


def test_calls_are_split_so_every_full_window_holds_exactly_window_rows() -> None:
    book = WindowBook(window_rows=10, window_s=60.0)
    rows = np.arange(28, dtype=float).reshape(-1, 1)
    closed = []
    for start in range(0, 28, 7):
        closed += book.add(_call(rows[start : start + 7]), now=0.0)
    assert [w.rows for w in closed] == [10, 10]
    np.testing.assert_array_equal(np.concatenate([w.features for w in closed]).ravel(), np.arange(20))
    assert [w.seq for w in closed] == [0, 1] and book.open_rows == 8
    assert all(w.closed_on == "rows" for w in closed)


def test_a_window_closes_on_the_processing_clock_with_few_rows() -> None:
    book = WindowBook(window_rows=500, window_s=60.0)
    book.add(_call(np.ones((3, 2))), now=100.0)
    book.add(_call(np.ones((2, 2))), now=130.0)
    assert book.tick(now=159.9) == []
    (window,) = book.tick(now=160.0)
    assert (window.rows, window.closed_on, window.opened_at, window.closed_at) == (5, "time", 100.0, 160.0)
    assert book.open == {}


def test_a_replayed_backlog_is_windowed_by_log_time() -> None:
    book = WindowBook(window_rows=500, window_s=60.0)
    assert book.add(_call(np.ones((3, 1)), event_ms=0), now=0.0) == []
    assert book.add(_call(np.ones((3, 1)), event_ms=59_999), now=0.0) == []
    (window,) = book.add(_call(np.ones((3, 1)), event_ms=60_000), now=0.0)
    assert (window.rows, window.first_ms, window.last_ms) == (6, 0, 59_999)
    assert book.open_rows == 3


def test_versions_and_outlier_rates_are_kept_apart() -> None:
    book = WindowBook(window_rows=4, window_s=60.0)
    (v1,) = book.add(_call(np.ones((4, 1)), flags=[True, False, False, False]), now=0.0)
    (v2,) = book.add(_call(np.ones((4, 1)), version="2"), now=0.0)
    assert (v1.model_version, v1.outlier_rate) == ("1", 0.25)
    assert (v2.model_version, v2.outlier_rate) == ("2", None)  # no flags carried: rate unknown


def test_rows_with_another_feature_count_are_counted_not_mixed_in() -> None:
    book = WindowBook(window_rows=10, window_s=60.0)
    book.add(_call(np.ones((3, 2))), now=0.0)
    book.add(_call(np.ones((4, 3))), now=0.0)
    assert book.open_rows == 3 and book.mismatched_rows == 4


def test_snapshot_round_trip_resumes_the_open_window() -> None:
    book = WindowBook(window_rows=10, window_s=60.0)
    book.add(_call(np.arange(6, dtype=float).reshape(-1, 1)), now=5.0)
    restored = WindowBook(window_rows=10, window_s=60.0)
    restored.restore(book.snapshot())
    (window,) = restored.add(_call(np.arange(6, 12, dtype=float).reshape(-1, 1)), now=6.0)
    np.testing.assert_array_equal(window.features.ravel(), np.arange(10))
    assert (window.seq, window.opened_at) == (0, 5.0)
