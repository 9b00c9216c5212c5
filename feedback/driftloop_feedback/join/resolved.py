"""The example keys a shard resolved (joined, or expired unjoined) within the last ``ttl_s``: what
makes a repeated prediction or truth a duplicate (or a late truth) rather than a second example.

A dict from key (``example_hash``) to status answers lookups; the keys in the order they were resolved
sit in three typed arrays (time, key, status) for expiry. A shard's ``now`` never goes back, so times
are sorted and expiry is a bisection. Each live key is in the arrays once: a key is resolved only when
it is not already, and it leaves the dict only when its entry leaves the arrays, oldest first. So the
arrays alone carry the state, and a snapshot is three buffer copies however many keys there are (a
pickled dict and deque of tuples cost ~25 ms per 100k keys at every checkpoint).

>>> keys = ResolvedKeys()
>>> keys.mark(0xBEEF, JOINED, at=10.0)
>>> keys.status.get(0xBEEF) == JOINED
True
>>> keys.expire(cutoff=10.0); len(keys)
0
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

JOINED, EXPIRED = 1, 2
_COMPACT_AT = 1 << 16  # expired entries dropped from the arrays' front once there are this many


class ResolvedKeys:
    def __init__(self) -> None:
        self.status: dict[int, int] = {}  # key -> JOINED / EXPIRED
        self.times = array("d")
        self.keys = array("Q")
        self.statuses = bytearray()
        self._head = 0  # entries before it have expired

    def __len__(self) -> int:
        return len(self.status)

    def mark(self, key: int, status: int, at: float) -> None:
        """Resolve ``key`` at shard time ``at`` (not before any earlier mark); it must not be resolved
        already (callers check ``status`` first)."""
        self.status[key] = status
        self.times.append(at)
        self.keys.append(key)
        self.statuses.append(status)

    def mark_many(self, keys: list[int], status: int, at: float) -> None:
        """``mark`` for each of ``keys`` (distinct), all at ``at``."""
        self.status.update(dict.fromkeys(keys, status))
        self.times.extend(array("d", [at]) * len(keys))
        self.keys.extend(keys)
        self.statuses += bytes((status,)) * len(keys)

    def add_marked(self, keys: list[int], times: list[float], status: int) -> None:
        """Record the order of ``keys`` already set to ``status`` in ``self.status`` by a caller's
        loop (which needs each visible at once), resolved at ``times`` (non-decreasing)."""
        self.times.extend(times)
        self.keys.extend(keys)
        self.statuses += bytes((status,)) * len(keys)

    def expire(self, cutoff: float) -> None:
        """Forget keys resolved at or before ``cutoff``."""
        end = bisect_right(self.times, cutoff, self._head)
        if end == self._head:
            return
        pop = self.status.pop
        for key in self.keys[self._head : end]:
            pop(key, None)
        self._head = end
        if end >= _COMPACT_AT and end * 2 >= len(self.times):
            del self.times[:end], self.keys[:end], self.statuses[:end]
            self._head = 0

    def snapshot(self) -> dict[str, Any]:
        head = self._head
        return {
            "times": self.times[head:],
            "keys": self.keys[head:],
            "statuses": bytes(self.statuses[head:]),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> ResolvedKeys:
        resolved = cls()
        resolved.times = array("d", state["times"])
        resolved.keys = array("Q", state["keys"])
        resolved.statuses = bytearray(state["statuses"])
        resolved.status = dict(zip(resolved.keys, resolved.statuses, strict=True))
        return resolved

    @classmethod
    def from_legacy(cls, status: dict[int, int], order: Iterable[tuple[float, int]]) -> ResolvedKeys:
        """From a snapshot written before this class: the status dict and a deque of (time, key)."""
        resolved = cls()
        for at, key in order:
            found = status.get(key)
            if found is not None:
                resolved.mark(key, found, at)
        return resolved
