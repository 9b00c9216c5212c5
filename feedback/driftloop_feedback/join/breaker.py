"""The sampling circuit breaker: off by default. When on and the lag of the prediction inputs exceeds
a threshold, only a fixed share of predictions is kept, chosen by a hash of the request id (so a replay
after a crash makes the same choice). Every sampled-out prediction is counted; trips are logged."""

from __future__ import annotations

import hashlib
import logging

log = logging.getLogger(__name__)


class SamplingBreaker:
    def __init__(self, enabled: bool, lag_threshold: int, keep_fraction: float) -> None:
        self.enabled = enabled
        self.lag_threshold = lag_threshold
        self.keep_fraction = keep_fraction
        self.tripped = False
        self.trips = 0
        self.sampled_out = 0

    def observe(self, lag: int) -> None:
        if not self.enabled:
            return
        if not self.tripped and lag > self.lag_threshold:
            self.tripped = True
            self.trips += 1
            log.warning(
                "sampling breaker TRIPPED: prediction lag %d > %d; keeping %.1f%% of predictions until "
                "lag falls below %d (sampled-out records are counted as sampled_out)",
                lag,
                self.lag_threshold,
                100 * self.keep_fraction,
                self.lag_threshold // 2,
            )
        elif self.tripped and lag < self.lag_threshold // 2:
            self.tripped = False
            log.warning("sampling breaker reset: prediction lag %d; keeping every prediction again", lag)

    def drop(self, request_id: str) -> bool:
        """Whether to sample this prediction out (counted)."""
        if not self.tripped:
            return False
        digest = hashlib.blake2b(request_id.encode(), digest_size=4).digest()
        keep = int.from_bytes(digest, "little") / 2**32 < self.keep_fraction
        if not keep:
            self.sampled_out += 1
        return not keep
