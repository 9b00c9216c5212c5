"""An open-addressing hash index from 64-bit key hashes to slots, in two numpy arrays (12 bytes per
entry at load <= 1/2): no Python object per entry. Slot -1 marks an empty position, -2 a tombstone.

>>> index = HashIndex(8)
>>> index.put(12345, slot=3)
>>> index.probe(12345)
[3]
>>> index.remove(12345, slot=3); index.probe(12345)
[]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

EMPTY = -1
TOMBSTONE = -2


class HashIndex:
    def __init__(self, size: int) -> None:
        if size & (size - 1):
            raise ValueError(f"index size {size} must be a power of two")
        self.keys = np.zeros(size, dtype=np.uint64)
        self.slots = np.full(size, EMPTY, dtype=np.int32)
        self.used = 0  # live entries + tombstones
        self.live = 0

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.slots.nbytes)

    def probe(self, h: int) -> list[int]:
        """Every slot filed under ``h`` (hash collisions are possible: callers check the key)."""
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        found: list[int] = []
        hv = np.uint64(h)
        while True:
            s = int(slots[pos])
            if s == EMPTY:
                return found
            if s >= 0 and keys[pos] == hv:
                found.append(s)
            pos = (pos + 1) & mask

    def put(self, h: int, slot: int) -> None:
        if (self.used + 1) * 2 > len(self.keys):
            self._rehash(len(self.keys) * (2 if self.live * 4 > len(self.keys) else 1))
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        while int(slots[pos]) >= 0:
            pos = (pos + 1) & mask
        if int(slots[pos]) == EMPTY:
            self.used += 1
        keys[pos] = h
        slots[pos] = slot
        self.live += 1

    def remove(self, h: int, slot: int) -> None:
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        while int(slots[pos]) != slot or int(keys[pos]) != h:
            if int(slots[pos]) == EMPTY:
                raise KeyError(f"slot {slot} is not indexed under {h}")
            pos = (pos + 1) & mask
        slots[pos] = TOMBSTONE
        self.live -= 1

    def entries(self) -> Iterable[tuple[int, int]]:
        for pos in np.nonzero(self.slots >= 0)[0]:
            yield int(self.keys[pos]), int(self.slots[pos])

    def _rehash(self, size: int) -> None:
        old = list(self.entries())
        self.keys = np.zeros(size, dtype=np.uint64)
        self.slots = np.full(size, EMPTY, dtype=np.int32)
        self.used = self.live = 0
        for h, slot in old:
            self.put(h, slot)
