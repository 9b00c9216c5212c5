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

    def put_many(self, hashes: list[int], slots: list[int]) -> None:
        """``put`` for each pair, in order (the same positions as one ``put`` per pair)."""
        for h, slot in zip(hashes, slots, strict=True):
            if (self.used + 1) * 2 > len(self.keys):
                self.put(h, slot)  # rehashes first
                continue
            keys, table = self.keys, self.slots
            mask = len(keys) - 1
            pos = h & mask
            while table[pos] >= 0:
                pos = (pos + 1) & mask
            if table[pos] == EMPTY:
                self.used += 1
            keys[pos] = h
            table[pos] = slot
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
        """Every live entry into a fresh table of ``size`` (no tombstones), placed by numpy: sorted by
        home position, each goes to max(its home, the previous entry's position + 1), which keeps every
        position between an entry's home and its own occupied, as linear probing needs. Entries pushed
        past the end wrap to the first free positions from 0, as ``put`` would place them."""
        # In slices of home positions, in order, so the temporaries stay a fraction of the table (what
        # malloc takes at the peak, the process tends to keep). ``carry``: the position after the
        # previous slice's last entry.
        old_keys = np.frombuffer(self.keys, dtype=np.uint64)
        old_slots = np.frombuffer(self.slots, dtype=np.int32)
        home_all = (old_keys & np.uint64(size - 1)).astype(np.int64)
        home_all[old_slots < 0] = -1  # not live
        self.keys = _keys(size)
        self.slots = _slots(size)
        new_keys = np.frombuffer(self.keys, dtype=np.uint64)
        new_slots = np.frombuffer(self.slots, dtype=np.int32)
        step = max(size // 16, 1 << 12)
        carry = 0
        wrapped: list[tuple[int, int]] = []
        self.used = self.live = 0
        for first in range(0, size, step):
            picked = np.flatnonzero((home_all >= first) & (home_all < first + step))
            if not len(picked):
                continue
            home = home_all[picked]
            order = np.argsort(home, kind="stable")
            picked, home = picked[order], home[order]
            home[0] = max(int(home[0]), carry)
            rank = np.arange(len(home), dtype=np.int64)
            pos = np.maximum.accumulate(home - rank) + rank
            carry = int(pos[-1]) + 1
            fits = pos < size
            new_keys[pos[fits]] = old_keys[picked[fits]]
            new_slots[pos[fits]] = old_slots[picked[fits]]
            self.used += int(np.count_nonzero(fits))
            wrapped += zip(old_keys[picked[~fits]].tolist(), old_slots[picked[~fits]].tolist(), strict=True)
        self.live = self.used
        del new_keys, new_slots
        for h, slot in wrapped:
            self.put(h, slot)  # wrapped around: probes from its home, past the end, to a free position
