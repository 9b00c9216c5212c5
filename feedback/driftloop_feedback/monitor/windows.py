"""Windows of a served model version's input rows, bounded by count **and** time.

One open window per (predictor, model version). A window closes when it holds ``window_rows`` rows
(a call's rows are split across windows so that every window holds exactly that many), when a call
arrives whose log time is ``window_s`` or more after the window's first row (a replayed backlog is
windowed by the time its rows were logged), or when the processing clock says the window has been open
``window_s`` (little traffic still gets a verdict). The clock is injected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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

    def __init__(self, *, window_rows: int, window_s: float) -> None:
        self.window_rows = window_rows
        self.window_s = window_s
        self.open: dict[WindowKey, OpenWindow] = {}
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
                window.outliers += int(flags[start : start + take].sum())
                window.flagged_rows += take
            start += take
            if window.rows >= self.window_rows:
                closed.append(self._close(key, now, CLOSED_ON_ROWS))
                window = None
        return closed

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
