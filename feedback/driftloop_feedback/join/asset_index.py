"""Per-asset event-time state of the asset join: readings sorted by event time, pending predictions
sorted by target time (``event_time + horizon_s``), and the asset's watermark (latest reading time minus
the allowed lateness). Arrays, not objects: 16 bytes per pending prediction, 16 per reading."""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field


@dataclass
class AssetState:
    max_time: float = float("-inf")
    reading_times: array = field(default_factory=lambda: array("d"))
    reading_values: array = field(default_factory=lambda: array("d"))
    targets: array = field(default_factory=lambda: array("d"))
    slots: array = field(default_factory=lambda: array("q"))

    def watermark(self, lateness_s: float) -> float:
        return self.max_time - lateness_s

    def has_reading_at(self, t: float) -> bool:
        i = bisect.bisect_left(self.reading_times, t)
        return i < len(self.reading_times) and self.reading_times[i] == t

    def add_reading(self, t: float, value: float) -> None:
        i = bisect.bisect_left(self.reading_times, t)
        self.reading_times.insert(i, t)
        self.reading_values.insert(i, value)
        self.max_time = max(self.max_time, t)

    def nearest(self, target: float, tolerance_s: float) -> tuple[float, float] | None:
        """(time, value) of the reading nearest ``target`` within the tolerance (earlier wins a tie)."""
        times = self.reading_times
        i = bisect.bisect_left(times, target)
        best: tuple[float, float] | None = None
        for j in (i - 1, i):
            if not (0 <= j < len(times) and abs(times[j] - target) <= tolerance_s):
                continue
            if best is None or abs(times[j] - target) < abs(best[0] - target):
                best = (times[j], self.reading_values[j])
        return best

    def add_pending(self, target: float, slot: int) -> None:
        i = bisect.bisect_right(self.targets, target)
        self.targets.insert(i, target)
        self.slots.insert(i, slot)

    def pop_due(self, cutoff: float) -> list[tuple[float, int]]:
        """Pending predictions whose target time is at or before ``cutoff``."""
        n = bisect.bisect_right(self.targets, cutoff)
        due = list(zip(self.targets[:n], self.slots[:n], strict=True))
        del self.targets[:n]
        del self.slots[:n]
        return due

    def discard_pending(self, slots: set[int]) -> None:
        keep = [i for i, s in enumerate(self.slots) if s not in slots]
        self.targets = array("d", (self.targets[i] for i in keep))
        self.slots = array("q", (self.slots[i] for i in keep))

    def forget_readings_before(self, t: float) -> None:
        n = bisect.bisect_left(self.reading_times, t)
        if n:
            del self.reading_times[:n]
            del self.reading_values[:n]
