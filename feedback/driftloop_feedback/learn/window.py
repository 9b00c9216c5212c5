"""The data window of one candidate: what the challenger learned since the previous candidate.

It records what MLflow needs to tell the window apart (first and last example id, event-time range,
count, the source offsets read per partition), the prequential loss sums of the challenger and the
champion over it, and its most recent rows as the candidate's reference data.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


class DataWindow:
    def __init__(self, reference_rows: int) -> None:
        self.count = 0
        self.first_example_id: str | None = None
        self.last_example_id: str | None = None
        self.event_time_min = float("inf")
        self.event_time_max = float("-inf")
        self.offsets: dict[str, list[int]] = {}  # "topic/partition" -> [first offset, next offset]
        self.challenger_loss = 0.0
        self.champion_loss = 0.0
        self.reference_rows = reference_rows
        # the most recent rows, as the batches' own arrays (newest last), trimmed to reference_rows;
        # ``reference`` (a deque of rows) is what checkpoints written before them hold
        self.recent: deque[np.ndarray] = deque()
        self.recent_count = 0
        self.reference: deque[np.ndarray] = deque(maxlen=reference_rows)

    def add_example(
        self, example_id: str, event_time: float, topic: str, partition: int, offset: int
    ) -> None:
        if self.first_example_id is None:
            self.first_example_id = example_id
        self.last_example_id = example_id
        self.event_time_min = min(self.event_time_min, event_time)
        self.event_time_max = max(self.event_time_max, event_time)
        span = self.offsets.setdefault(f"{topic}/{partition}", [offset, offset + 1])
        span[1] = offset + 1
        self.count += 1

    def add_rows(
        self, ids: list[str], event_times: np.ndarray, sources: list[str], offsets: np.ndarray
    ) -> None:
        """``add_example`` for a batch at once (rows in the order read; ``sources`` "topic/partition")."""
        if not ids:
            return
        if self.first_example_id is None:
            self.first_example_id = ids[0]
        self.last_example_id = ids[-1]
        self.event_time_min = min(self.event_time_min, float(event_times.min()))
        self.event_time_max = max(self.event_time_max, float(event_times.max()))
        # offsets ascend within a source: its first row has its first offset, its last row the last
        # (rows found with list.index, in C: a batch holds a few sources)
        backwards = sources[::-1]
        for name in sorted(dict.fromkeys(sources)):
            span = self.offsets.setdefault(name, [int(offsets[sources.index(name)]), 0])
            span[1] = int(offsets[len(sources) - 1 - backwards.index(name)]) + 1
        self.count += len(ids)

    def add_scores(self, X: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> None:
        self.challenger_loss += float(challenger.sum())
        self.champion_loss += float(champion.sum())
        if not hasattr(self, "recent"):  # restored from a checkpoint written before ``recent``
            self.reference.extend(X)
            return
        keep = self.reference_rows
        self.recent.append(X[-keep:])
        self.recent_count += min(len(X), keep)
        while self.recent_count - len(self.recent[0]) >= keep:  # the oldest batch no longer needed
            self.recent_count -= len(self.recent.popleft())

    def params(self) -> dict[str, Any]:
        return {
            "window.count": self.count,
            "window.first_example_id": self.first_example_id or "",
            "window.last_example_id": self.last_example_id or "",
            "window.event_time_min": self.event_time_min if self.count else "",
            "window.event_time_max": self.event_time_max if self.count else "",
            # per source partition: "<first offset>-<next offset>" (Kafka's convention: next = last + 1)
            **{f"window.offsets.{tp}": f"{a}-{b}" for tp, (a, b) in sorted(self.offsets.items())},
        }

    def metrics(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {
            "prequential_error_candidate": self.challenger_loss / n,
            "prequential_error_champion": self.champion_loss / n,
            "window_count": float(self.count),
        }

    def reference_array(self) -> np.ndarray:
        """The window's most recent ``reference_rows`` rows, oldest first."""
        rows = list(self.reference)
        if getattr(self, "recent", None):
            rows.extend(np.concatenate(list(self.recent))[-self.reference_rows :])
            rows = rows[-self.reference_rows :]
        return np.asarray(rows, dtype=float)
