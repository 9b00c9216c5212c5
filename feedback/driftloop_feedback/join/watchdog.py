"""A guard against a consumer that joined its group before it knew the subscribed topics: kafka-python
then assigns it nothing (``No partition metadata for topic ...``) and may wait for the next metadata
refresh (``metadata_max_age_ms``, 5 min) before rebalancing. A stage whose consumer has had no
partition for ``grace_s`` re-subscribes once (a fresh consumer, so one more rebalance); a member that
is idle because the group has more members than partitions pays that once and then stays idle.

>>> clock = iter([0.0, 10.0, 31.0, 40.0]).__next__
>>> dog = AssignmentWatchdog(clock, grace_s=30.0)
>>> [dog.should_resubscribe(assigned=False) for _ in range(4)]
[False, False, True, False]
"""

from __future__ import annotations

from collections.abc import Callable


class AssignmentWatchdog:
    def __init__(self, clock: Callable[[], float], grace_s: float = 30.0) -> None:
        self.clock = clock
        self.grace_s = grace_s
        self.used = False
        self._unassigned_since: float | None = None

    def should_resubscribe(self, assigned: bool) -> bool:
        if assigned or self.used:
            self._unassigned_since = None
            return False
        now = self.clock()
        if self._unassigned_since is None:
            self._unassigned_since = now
            return False
        if now - self._unassigned_since >= self.grace_s:
            self.used = True
            return True
        return False
