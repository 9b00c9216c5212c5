"""A guard against a consumer that joined its group before it knew the subscribed topics: kafka-python
then assigns it nothing (``No partition metadata for topic ...``) and may wait for the next metadata
refresh (``metadata_max_age_ms``, 5 min) before rebalancing; a fresh consumer can hit the same race.
A stage whose consumer has had no partition for ``grace_s`` re-subscribes (a fresh consumer, so one
more rebalance), waiting twice as long before each further attempt, at most ``attempts`` times. A
member that is idle because the group has more members than partitions pays those few rebalances once.

>>> clock = iter([0.0, 10.0, 11.0, 20.0, 32.0, 33.0]).__next__
>>> dog = AssignmentWatchdog(clock, grace_s=10.0, attempts=2)
>>> [dog.should_resubscribe(assigned=False) for _ in range(6)]
[False, True, False, False, True, False]
"""

from __future__ import annotations

from collections.abc import Callable


class AssignmentWatchdog:
    def __init__(self, clock: Callable[[], float], grace_s: float = 5.0, attempts: int = 6) -> None:
        self.clock = clock
        self.grace_s = grace_s
        self.attempts = attempts
        self.used = 0
        self._unassigned_since: float | None = None

    @property
    def wait_s(self) -> float:
        return self.grace_s * 2**self.used

    def should_resubscribe(self, assigned: bool) -> bool:
        if assigned or self.used >= self.attempts:
            self._unassigned_since = None
            return False
        now = self.clock()
        if self._unassigned_since is None:
            self._unassigned_since = now
            return False
        if now - self._unassigned_since >= self.wait_s:
            self.used += 1
            self._unassigned_since = now
            return True
        return False
