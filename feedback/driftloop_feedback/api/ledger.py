"""Which record ids this process has written (the last ``capacity``) or is writing right now.

A request claims its ids in one short critical section (set and dict look-ups: linear in its rows),
writes outside the lock, then settles the claim. An id another request is still writing is not
written twice: the second request waits for that write to settle, then claims again (written: a
duplicate; failed: its own to write).

>>> ledger = RecordLedger(capacity=10)
>>> claim = ledger.claim(["a", "b", "a"])
>>> claim.fresh, claim.repeated, claim.busy
(['a', 'b'], ['a'], [])
>>> ledger.settle(claim, written=["a", "b"])
>>> ledger.claim(["a"]).repeated
['a']
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Write:
    """One request's writing of its claimed ids; ``done`` is set when it settles."""

    def __init__(self) -> None:
        self.done = threading.Event()


@dataclass
class Claim:
    write: Write
    fresh: list[str] = field(default_factory=list)  # this request writes them
    repeated: list[str] = field(default_factory=list)  # written before, or earlier in this request
    busy: list[str] = field(default_factory=list)  # another request is writing them
    waits: set[Write] = field(default_factory=set)  # ... these writes


class RecordLedger:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._written: OrderedDict[str, None] = OrderedDict()
        self._writing: dict[str, Write] = {}

    def claim(self, ids: Sequence[str]) -> Claim:
        claim = Claim(Write())
        mine: set[str] = set()
        with self._lock:
            for rid in ids:
                if rid in mine or rid in self._written:
                    claim.repeated.append(rid)
                elif (other := self._writing.get(rid)) is not None:
                    claim.busy.append(rid)
                    claim.waits.add(other)
                else:
                    mine.add(rid)
                    claim.fresh.append(rid)
                    self._writing[rid] = claim.write
        return claim

    def settle(self, claim: Claim, written: Iterable[str]) -> None:
        """``written`` ids are remembered; every other fresh id of ``claim`` is released."""
        with self._lock:
            for rid in written:
                self._remember(rid)
            for rid in claim.fresh:
                if self._writing.get(rid) is claim.write:
                    del self._writing[rid]
        claim.write.done.set()

    def _remember(self, rid: str) -> None:
        if self.capacity == 0:
            return
        self._written[rid] = None
        self._written.move_to_end(rid)
        while len(self._written) > self.capacity:
            self._written.popitem(last=False)
