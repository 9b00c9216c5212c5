"""An open-addressing hash index from 64-bit key hashes to slots, in two typed arrays (12 bytes per
entry at load <= 1/2): no Python object per entry. Slot -1 marks an empty position, -2 a tombstone.
The arrays are ``array.array`` (one element read from Python costs a third of a numpy element read);
an index unpickled from an older snapshot may hold numpy arrays, which ``restore`` converts.

>>> index = HashIndex(8)
>>> index.put(12345, slot=3)
>>> index.probe(12345)
[3]
>>> index.remove(12345, slot=3); index.probe(12345)
[]
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

EMPTY = -1
TOMBSTONE = -2


def _keys(size: int) -> array[int]:
    return array("Q", [0]) * size  # repetition allocates exactly the size


def _slots(size: int) -> array[int]:
    return array("i", [EMPTY]) * size


class HashIndex:
    def __init__(self, size: int) -> None:
        if size & (size - 1):
            raise ValueError(f"index size {size} must be a power of two")
        self.keys: Any = _keys(size)
        self.slots: Any = _slots(size)
        self.used = 0  # live entries + tombstones
        self.live = 0

    @property
    def nbytes(self) -> int:
        return int(len(self.keys) * 8 + len(self.slots) * 4)

    def restore(self) -> HashIndex:
        """Typed arrays again after unpickling an index that held numpy arrays (older snapshots)."""
        if not isinstance(self.keys, array):
            self.keys = array("Q", self.keys.astype("<u8").tobytes())
            self.slots = array("i", self.slots.astype("<i4").tobytes())
        return self

    def probe(self, h: int) -> list[int]:
        """Every slot filed under ``h`` (hash collisions are possible: callers check the key)."""
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        found: list[int] = []
        while True:
            s = slots[pos]
            if s == EMPTY:
                return found
            if s >= 0 and keys[pos] == h:
                found.append(s)
            pos = (pos + 1) & mask

    def put(self, h: int, slot: int) -> None:
        if (self.used + 1) * 2 > len(self.keys):
            self._rehash(len(self.keys) * (2 if self.live * 4 > len(self.keys) else 1))
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        while slots[pos] >= 0:
            pos = (pos + 1) & mask
        if slots[pos] == EMPTY:
            self.used += 1
        keys[pos] = h
        slots[pos] = slot
        self.live += 1

    def remove(self, h: int, slot: int) -> None:
        keys, slots = self.keys, self.slots
        mask = len(keys) - 1
        pos = h & mask
        while slots[pos] != slot or keys[pos] != h:
            if slots[pos] == EMPTY:
                raise KeyError(f"slot {slot} is not indexed under {h}")
            pos = (pos + 1) & mask
        slots[pos] = TOMBSTONE
        self.live -= 1

    def entries(self) -> Iterable[tuple[int, int]]:
        keys, slots = self.keys, self.slots
        for pos in np.nonzero(np.frombuffer(slots, dtype=np.int32) >= 0)[0].tolist():
            yield keys[pos], slots[pos]

    def _rehash(self, size: int) -> None:
        old = list(self.entries())
        self.keys = _keys(size)
        self.slots = _slots(size)
        self.used = self.live = 0
        for h, slot in old:
            self.put(h, slot)
