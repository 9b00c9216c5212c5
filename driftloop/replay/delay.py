"""When each row's label is revealed: ``delay`` rows later, or once the event time has moved on by a
duration (``30s``, ``15min``, ``2h``, ``1d``; anything ``pandas.Timedelta`` reads).

The reveal step of row ``j`` is the step before whose prediction its label is learned. It is always
after ``j`` itself (a label is never known when its own row is predicted): ``j + rows``, or the first
row whose time is at least ``time[j] + duration`` (and at least ``j + 1``). With a numeric time column,
durations are in the column's unit taken as seconds. Rows whose label would be revealed after the last
row are never learned (they are still scored).

>>> LabelDelay.parse("3").reveal_steps(5, None).tolist()
[3, 4, 5, 6, 7]
>>> LabelDelay.parse("1min").reveal_steps(4, np.array([0.0, 30.0, 60.0, 61.0])).tolist()
[2, 3, 4, 4]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from driftloop.replay.errors import ReplayError

_ROWS = re.compile(r"^\s*\d+\s*$")


@dataclass(frozen=True)
class LabelDelay:
    rows: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> LabelDelay:
        """``N`` (rows) or a duration such as ``30s``, ``15min``, ``2h``."""
        if isinstance(text, int) or _ROWS.match(str(text)):
            rows = int(text)
            if rows < 1:
                raise ReplayError(
                    f"--label-delay {rows}: a label is known at the earliest one row after its prediction; "
                    "pass 1 or more rows, or a duration such as 30s"
                )
            return cls(rows=rows)
        try:
            duration = pd.Timedelta(str(text).strip())
        except ValueError as exc:
            raise ReplayError(
                f"--label-delay {text!r} is neither a row count nor a duration: pass e.g. 1, 30s, 15min or 2h"
            ) from exc
        if pd.isna(duration) or duration.total_seconds() <= 0:
            raise ReplayError(f"--label-delay {text!r} must be a positive duration, e.g. 30s or 15min")
        return cls(seconds=duration.total_seconds())

    def describe(self) -> str:
        if self.rows is not None:
            return f"{self.rows} row(s)"
        return f"{self.seconds:g} s"

    def to_dict(self) -> dict[str, float | int | None]:
        return {"rows": self.rows, "seconds": self.seconds}

    def reveal_steps(self, n: int, time: np.ndarray | None) -> np.ndarray:
        """The step at which each of ``n`` rows' labels is revealed (non-decreasing; ``>= n``: never)."""
        steps = np.arange(n, dtype=np.int64)
        if self.rows is not None:
            return steps + self.rows
        if time is None:
            raise ReplayError(
                f"--label-delay {self.seconds:g}s is a duration: pass --time COL to say when each row "
                "happened, or give the delay in rows"
            )
        assert self.seconds is not None
        later = np.searchsorted(time, time + self.seconds, side="left").astype(np.int64)
        return np.maximum(later, steps + 1)
