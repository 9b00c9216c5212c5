"""The outlier-rate alarm: a one-sided binomial test on a window's count of rows the outlier node flagged.

The outlier node flags a row when its score is above a threshold set on the reference, so under no
change a row is flagged with a known probability, the **base rate** ``p0`` (with the trainer's defaults,
threshold quantile 0.995 after a 2% reference trim: about 0.02 + 0.98 x 0.005 = 0.025). A single flagged
row is expected at that rate and says little; many in one window do. Per window of ``n`` rows the test
alarms when the flagged count ``X`` reaches the critical count ``c``: the smallest ``c`` with
``P(X >= c) <= alpha`` for ``X ~ Binomial(n, p0)``. Its false-alarm probability per window is at most
``alpha`` (exact binomial tail, no approximation); by linearity of expectation the expected number of
false alarms is ``alpha`` times the number of windows, however the windows depend on each other.

The alarm is raised as soon as the count reaches ``c`` for a full window (``window_rows`` rows): the
count only grows, so that happens exactly when the full window's count would reach it (a curtailed
test: the same rejection region, hence the same error rate, decided earlier). A window that closes with
fewer rows (on time) is tested at close with the critical count of its own row count, which is no
larger; a window alarms at most once.

Assumption: rows are flagged independently. Rows of an autocorrelated process are flagged in runs, so
counts spread wider than binomial and the real false-alarm rate can be higher than ``alpha`` (stated in
docs/drift-monitor.md with the NAB figures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import orjson
from scipy import stats

OUTLIER_RATE = "outlier_rate"
BINOMIAL = "binomial"


@lru_cache(maxsize=256)
def critical_count(n: int, base_rate: float, alpha: float) -> int:
    """The smallest ``c`` with ``P(X >= c) <= alpha``, ``X ~ Binomial(n, base_rate)``; ``n + 1`` when no
    count of ``n`` rows is that unlikely (too few rows to decide at this ``alpha``)."""
    if n <= 0:
        return 1
    c = int(stats.binom.isf(alpha, n, base_rate)) + 1
    while c > 0 and binomial_p_value(c - 1, n, base_rate) <= alpha:  # isf's float edge: step down
        c -= 1
    while c <= n and binomial_p_value(c, n, base_rate) > alpha:
        c += 1
    return min(c, n + 1)


def binomial_p_value(count: int, n: int, base_rate: float) -> float:
    """``P(X >= count)`` for ``X ~ Binomial(n, base_rate)``: the one-sided p-value of ``count`` flags."""
    return float(stats.binom.sf(count - 1, n, base_rate))


@dataclass(frozen=True)
class OutlierRateTest:
    """The test's settings; ``window_rows`` is the full window the curtailed test is set for."""

    base_rate: float
    alpha: float
    window_rows: int

    @property
    def full_window_critical(self) -> int:
        return critical_count(self.window_rows, self.base_rate, self.alpha)

    def critical(self, n: int) -> int:
        return critical_count(n, self.base_rate, self.alpha)


@dataclass(frozen=True)
class Alarm:
    """One alarm event (``driftloop.alarms``, key = predictor): which test decided, at what error rate,
    on how many rows."""

    alarm_id: str  # window_id + "/" + kind: stable across a restart (events are at-least-once)
    kind: str  # outlier_rate
    window_id: str
    predictor: str
    model_version: str
    test: str  # binomial
    alpha: float  # false-alarm probability per window under no change
    base_rate: float  # the flag probability per row under no change
    count: int  # flagged rows when the test decided
    rows: int  # rows of the window (with outlier flags) when the test decided
    tested_rows: int  # the rows the critical count is for: the full window, or the rows at close
    critical_count: int
    p_value: float  # P(X >= count), X ~ Binomial(tested_rows, base_rate)
    at_ms: int  # log time of the call that decided
    raised_at: float  # processing clock

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> Alarm:
        return cls(**orjson.loads(data))
