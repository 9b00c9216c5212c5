"""Windows of a served model version's input rows, bounded by count **and** time.

One open window per (predictor, model version). A window closes when it holds ``window_rows`` rows
(a call's rows are split across windows so that every window holds exactly that many), when a call
arrives whose log time is ``window_s`` or more after the window's first row (a replayed backlog is
windowed by the time its rows were logged), or when the processing clock says the window has been open
``window_s`` (little traffic still gets a verdict). The clock is injected.

With an ``OutlierRateTest``, the book also raises the outlier-rate alarm (``alarms.py``) at the row where
a window's flagged count reaches the full window's critical count, or at close with the critical count
of the rows it closed with; raised alarms wait in ``take_alarms()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop_feedback.monitor.alarms import BINOMIAL, OUTLIER_RATE, Alarm, OutlierRateTest, binomial_p_value
from driftloop_feedback.monitor.pairing import ModelCall

WindowKey = tuple[str, str]  # (predictor, model version)

CLOSED_ON_ROWS = "rows"
CLOSED_ON_TIME = "time"


@dataclass
class OpenWindow:
    seq: int
    opened_at: float  # processing clock
    first_ms: int  # log time of the first row
    last_ms: int
    chunks: list[np.ndarray] = field(default_factory=list)
    rows: int = 0
    outliers: int = 0
    flagged_rows: int = 0  # rows whose call carried outlier flags
    alarm_rows: int | None = None  # flagged rows when the outlier-rate alarm was raised (once a window)

    @property
    def n_features(self) -> int:
        return int(self.chunks[0].shape[1]) if self.chunks else -1


@dataclass(frozen=True)
class ClosedWindow:
    predictor: str
    model_version: str
    seq: int
    opened_at: float
    closed_at: float
    first_ms: int
    last_ms: int
    features: np.ndarray  # float64 [rows, F]
    outliers: int
    flagged_rows: int
    closed_on: str
    alarm_rows: int | None = None  # flagged rows when the outlier-rate alarm was raised; None: not raised

    @property
    def rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def window_id(self) -> str:
        """Stable across a restart: a re-emitted event of the same window has the same id."""
        return f"{self.predictor}/{self.model_version}/{self.seq}"

    @property
    def outlier_rate(self) -> float | None:
        return self.outliers / self.flagged_rows if self.flagged_rows else None


class WindowBook:
    """The open windows of every (predictor, model version), and how many each key has closed."""

    def __init__(
        self, *, window_rows: int, window_s: float, outlier_test: OutlierRateTest | None = None
    ) -> None:
        self.window_rows = window_rows
        self.window_s = window_s
        self.outlier_test = outlier_test
        self.open: dict[WindowKey, OpenWindow] = {}
        self.raised: list[Alarm] = []  # alarms not yet taken
        self.next_seq: dict[WindowKey, int] = {}
        self.mismatched_rows = 0  # rows whose feature count differs from their window's

    def add(self, call: ModelCall, now: float) -> list[ClosedWindow]:
        key = (call.endpoint, call.model_version)
        closed: list[ClosedWindow] = []
        window = self.open.get(key)
        if window is not None and call.event_ms - window.first_ms >= self.window_s * 1000:
            closed.append(self._close(key, now, CLOSED_ON_TIME))
            window = None
        x = call.features
        if window is not None and window.chunks and x.shape[1] != window.n_features:
            self.mismatched_rows += int(x.shape[0])
            return closed
        flags = call.outlier_flags
        start = 0
        while start < x.shape[0]:
            if window is None:
                window = self._open(key, now, call.event_ms)
            take = min(self.window_rows - window.rows, x.shape[0] - start)
            window.chunks.append(x[start : start + take])
            window.rows += take
            window.last_ms = max(window.last_ms, call.event_ms)
            if flags is not None:
                chunk = np.asarray(flags[start : start + take], dtype=bool)
                before = window.outliers
                window.outliers += int(chunk.sum())
                window.flagged_rows += take
                self._check_crossing(key, window, chunk, before, call.event_ms, now)
            start += take
            if window.rows >= self.window_rows:
                closed.append(self._close(key, now, CLOSED_ON_ROWS))
                window = None
        return closed

    def _check_crossing(
        self, key: WindowKey, w: OpenWindow, chunk: np.ndarray, before: int, event_ms: int, now: float
    ) -> None:
        """Raise the alarm at the row where the count reaches the full window's critical count."""
        test = self.outlier_test
        if test is None or w.alarm_rows is not None:
            return
        critical = test.full_window_critical
        if w.outliers < critical:
            return
        at = int(np.argmax(before + np.cumsum(chunk) >= critical))  # the row that reached it
        rows = w.flagged_rows - len(chunk) + at + 1
        w.alarm_rows = rows
        self._raise(key, w, critical, rows, test.window_rows, critical, event_ms, now)

    def _raise(
        self,
        key: WindowKey,
        w: OpenWindow,
        count: int,
        rows: int,
        tested_rows: int,
        critical: int,
        at_ms: int,
        now: float,
    ) -> None:
        test = self.outlier_test
        assert test is not None
        window_id = f"{key[0]}/{key[1]}/{w.seq}"
        alarm = Alarm(
            alarm_id=f"{window_id}/{OUTLIER_RATE}",
            kind=OUTLIER_RATE,
            window_id=window_id,
            predictor=key[0],
            model_version=key[1],
            test=BINOMIAL,
            alpha=test.alpha,
            base_rate=test.base_rate,
            count=count,
            rows=rows,
            tested_rows=tested_rows,
            critical_count=critical,
            p_value=binomial_p_value(count, tested_rows, test.base_rate),
            at_ms=at_ms,
            raised_at=now,
        )
        self.raised.append(alarm)

    def take_alarms(self) -> list[Alarm]:
        """The alarms raised since the last call, in the order raised."""
        taken, self.raised = self.raised, []
        return taken

    def tick(self, now: float) -> list[ClosedWindow]:
        """Close every window open for ``window_s`` or longer on the processing clock."""
        due = [key for key, w in self.open.items() if now - w.opened_at >= self.window_s]
        return [self._close(key, now, CLOSED_ON_TIME) for key in due]

    def _open(self, key: WindowKey, now: float, event_ms: int) -> OpenWindow:
        seq = self.next_seq.get(key, 0)
        self.next_seq[key] = seq + 1
        window = self.open[key] = OpenWindow(seq=seq, opened_at=now, first_ms=event_ms, last_ms=event_ms)
        return window

    def _close(self, key: WindowKey, now: float, why: str) -> ClosedWindow:
        w = self.open.pop(key)
        features = np.concatenate(w.chunks) if w.chunks else np.empty((0, 0))
        test = self.outlier_test
        if test is not None and w.alarm_rows is None and w.flagged_rows > 0:
            critical = test.critical(w.flagged_rows)  # the rows it closed with: no larger than a full one's
            if w.outliers >= critical:
                w.alarm_rows = w.flagged_rows
                self._raise(key, w, w.outliers, w.flagged_rows, w.flagged_rows, critical, w.last_ms, now)
        return ClosedWindow(
            predictor=key[0],
            model_version=key[1],
            seq=w.seq,
            opened_at=w.opened_at,
            closed_at=now,
            first_ms=w.first_ms,
            last_ms=w.last_ms,
            features=features,
            outliers=w.outliers,
            flagged_rows=w.flagged_rows,
            closed_on=why,
            alarm_rows=w.alarm_rows,
        )

    @property
    def open_rows(self) -> int:
        return sum(w.rows for w in self.open.values())

    # -- snapshot ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        windows = []
        for key, w in self.open.items():
            data = np.concatenate(w.chunks) if w.chunks else np.empty((0, 0))
            w.chunks = [data] if w.chunks else []  # compacted once; later rows append to it
            fields = {k: v for k, v in vars(w).items() if k != "chunks"}
            windows.append((key, fields, data))
        return {"open": windows, "next_seq": dict(self.next_seq), "mismatched_rows": self.mismatched_rows}

    def restore(self, saved: dict[str, Any]) -> None:
        self.open = {}
        for key, fields, data in saved["open"]:
            window = OpenWindow(**fields)
            window.chunks = [data] if window.rows else []
            self.open[tuple(key)] = window
        self.next_seq = {tuple(k): v for k, v in saved["next_seq"].items()}
        self.mismatched_rows = int(saved.get("mismatched_rows", 0))
