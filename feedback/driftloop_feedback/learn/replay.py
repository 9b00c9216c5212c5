"""A seeded reservoir of older examples, mixed into each mini-batch at a set ratio.

Reservoir sampling (Vitter's algorithm R, its draws for a whole offer made at once) keeps a uniform sample
of every example offered so far in a fixed capacity, so old regimes keep a voice in proportion to how long
they lasted. ``draw`` returns ``ratio`` replayed rows per new row (the fractional part carried to the next
batch, so the long-run ratio is exact), each a uniform slot of the reservoir, with replacement. The buffer
and its random generator pickle together: a restored buffer draws exactly what the original would have.

Order: the trainer offers each mini-batch right after it is learned (``Challenger.learn``), so a batch
replays rows of every batch learned before it, the previous batches of the same poll included. Since
2026-12-05 ``draw`` picks a slot as ``floor(u * size)`` (one ``random`` call) instead of
``Generator.integers`` (~18 us a call): the same uniform draw with replacement from another stretch of
the random stream, so a seed replays other rows than before that change (a checkpoint restored with its
generator still draws exactly what the original run would have with this code).

>>> import numpy as np
>>> buffer = ReplayBuffer(capacity=100, ratio=0.5, seed=0)
>>> buffer.offer(np.arange(20.0).reshape(10, 2), np.arange(10.0))
>>> X, y = buffer.draw(10) or (None, None)
>>> len(buffer), X.shape, y.shape
(10, (5, 2), (5,))
"""

from __future__ import annotations

import numpy as np


class ReplayBuffer:
    def __init__(self, capacity: int, ratio: float, seed: int = 0) -> None:
        self.capacity = capacity
        self.ratio = ratio
        self.offered = 0
        self._rng = np.random.default_rng(seed)
        self._X: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._size = 0
        self._carry = 0.0

    def __len__(self) -> int:
        return self._size

    def offer(self, X: np.ndarray, y: np.ndarray) -> None:
        """Consider each row for the reservoir (call it after the rows have been learned)."""
        if self.capacity == 0:
            self.offered += len(X)
            return
        if self._X is None or self._y is None:
            self._X = np.empty((self.capacity, X.shape[1]), dtype=float)
            self._y = np.empty(self.capacity, dtype=y.dtype if y.dtype.kind in "biuf" else object)
        n = len(X)
        fill = min(self.capacity - self._size, n)  # while the reservoir is not full: every row
        if fill > 0:
            self._X[self._size : self._size + fill] = X[:fill]
            self._y[self._size : self._size + fill] = y[:fill]
            self._size += fill
        fill = max(fill, 0)
        if fill < n:  # then row k (k-th offered, 1-based) replaces a uniform slot in [0, k) if < capacity
            seen = np.arange(self.offered + fill + 1, self.offered + n + 1)
            # a uniform slot in [0, k) per row: floor(u * k) (``integers`` with an array of bounds
            # costs ~0.4 us a row; u * k's rounding bias is below 2**-50 for any k reached here). A row
            # stays when floor(u * k) < capacity, i.e. u * k < capacity: only those are floored (here
            # k > capacity, so the slot of a row that stays is below k - 1 and needs no clamp)
            scaled = self._rng.random(len(seen)) * seen
            kept = np.flatnonzero(scaled < self.capacity)
            slots = scaled[kept].astype(np.int64)
            rows = kept + fill
            if len(set(slots.tolist())) < len(slots):
                # of rows drawing the same slot the last one stays, as when they are offered one by one
                slots, at = np.unique(slots[::-1], return_index=True)
                rows = rows[len(rows) - 1 - at]
            self._X[slots] = X[rows]
            self._y[slots] = y[rows]
        self.offered += n

    def draw(self, new_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
        """``ratio * new_rows`` rows drawn uniformly (with replacement) from the reservoir, or None."""
        wanted = self.ratio * new_rows + self._carry
        count = int(wanted)
        self._carry = wanted - count
        if count == 0 or self._size == 0 or self._X is None or self._y is None:
            return None
        # a uniform slot in [0, size): floor(u * size), as in ``offer`` (``integers`` costs ~18 us a call)
        rows = np.minimum((self._rng.random(count) * self._size).astype(np.int64), self._size - 1)
        return self._X[rows], self._y[rows]
