"""The ``recent`` drift reference: the last ``rows`` rows the monitor windowed for each predictor.

With ``reference="recent"`` a window is tested against the rows that came just before it (of every
model version its predictor served), not against the served version's training reference: the
question becomes "did the inputs just change?" rather than "are the inputs still the training data's?".
A process that wanders slowly (a machine's level moving over weeks) then raises drift when it changes
quickly, and a lasting change raises drift once, not in every window after it: its rows become the
reference. Until a predictor has ``rows`` rows the version's reference judges its windows.

Every closed window's rows are added after it is judged, whatever its verdict but ``error`` (rows the
detector could not take). The rows are part of the monitor's snapshot, so a restart keeps them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RecentRows:
    """Per predictor, up to ``rows`` of the newest windowed rows (float64 [n, F], oldest first)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._kept: dict[str, np.ndarray] = {}

    def reference(self, predictor: str, n_features: int) -> np.ndarray | None:
        """The predictor's last ``rows`` rows when it has that many of ``n_features`` columns, else None."""
        kept = self._kept.get(predictor)
        if kept is None or kept.shape[0] < self.rows or kept.shape[1] != n_features:
            return None
        return kept

    def add(self, predictor: str, x: np.ndarray) -> None:
        """Append a judged window's rows; rows of another width replace what was kept."""
        x = np.asarray(x, dtype=np.float64)
        kept = self._kept.get(predictor)
        if kept is not None and kept.shape[1] == x.shape[1]:
            x = np.concatenate([kept, x])
        self._kept[predictor] = np.ascontiguousarray(x[-self.rows :])

    def held(self, predictor: str) -> int:
        kept = self._kept.get(predictor)
        return 0 if kept is None else int(kept.shape[0])

    def snapshot(self) -> dict[str, Any]:
        return {"rows": self.rows, "kept": {p: a.copy() for p, a in self._kept.items()}}

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Take a snapshot's rows (the newest ``rows`` of each, if the setting shrank since)."""
        self._kept = {}
        for predictor, rows in ((saved or {}).get("kept") or {}).items():
            self.add(predictor, rows)
