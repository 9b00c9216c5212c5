"""A sequential test on paired loss differences: feed ``d_i = loss(challenger) - loss(champion)`` one at a
time or in batches, get a typed decision after each feed.

The differences must lie in ``[-B, B]`` (``B`` = the loss bound: each loss clipped to ``[0, B]``);
they are mapped to ``x = (d + B) / 2B`` in ``[0, 1]`` and a ``BoundedMeanCS`` runs on ``x``. The
verdict at ``n >= min_examples`` (``thr`` = ``-margin`` for superiority, ``+margin`` for
non-inferiority):

- ``fail`` when the lower bound of E[d] is above ``thr`` (the challenger is worse than required);
- ``pass`` when the upper bound of E[d] is below ``thr``;
- ``inconclusive`` otherwise, also at ``max_examples`` (``exhausted`` is then true): the rollout
  controller treats it as "wait" and, once exhausted, as "expired", never as a pass or a fail.

The first pass or fail ends the test (it is a valid stopping time of an anytime-valid sequence); feeding
a concluded test raises ``SequenceClosedError``. A batch that reaches a verdict part-way is used only up
to that example (``Decision.n`` says how many were used).

>>> test = PairedLossTest(ValidationSettings(min_examples=10), bound=1.0)
>>> d = test.feed_many([-0.3, -0.1, -0.2] * 400)
>>> d.verdict, d.n < 1200, d.upper < 0.0
('pass', True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from driftloop_feedback.validate.confseq import METHOD, BoundedMeanCS
from driftloop_feedback.validate.errors import BadDifferenceError, SequenceClosedError, ValidatorConfigError
from driftloop_feedback.validate.settings import Mode, ValidationSettings

Verdict = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class Decision:
    """The test's state after a feed: the verdict and the anytime-valid bounds on E[d]."""

    verdict: Verdict
    lower: float
    upper: float
    mean: float  # plain average of the differences used (nan before any)
    n: int
    alpha: float
    margin: float
    mode: Mode
    threshold: float
    bound: float
    method: str
    exhausted: bool  # max_examples reached without a pass or fail

    @property
    def concluded(self) -> bool:
        """True once no further difference may be fed (a verdict, or the budget used)."""
        return self.verdict != "inconclusive" or self.exhausted


class PairedLossTest:
    """The validator's decision rule over an anytime-valid confidence sequence; O(1) state."""

    def __init__(self, settings: ValidationSettings, bound: float | None = None) -> None:
        bound = settings.loss_bound if bound is None else bound
        if bound is None or not bound > 0.0:
            raise ValidatorConfigError(
                "the paired test needs the loss bound B > 0 (differences lie in [-B, B]): "
                "set DRIFTLOOP_VALIDATION_LOSS_BOUND or pass bound="
            )
        if settings.margin >= bound:
            raise ValidatorConfigError(
                f"margin={settings.margin} is not below the loss bound {bound}: no difference could pass"
            )
        self.settings = settings
        self.bound = float(bound)
        self._cs = BoundedMeanCS(alpha=settings.alpha)
        self._sum_d = 0.0
        self._verdict: Verdict = "inconclusive"

    @property
    def n(self) -> int:
        return self._cs.n

    @property
    def remaining(self) -> int:
        """How many more differences the budget allows (0 once concluded)."""
        return 0 if self.decision().concluded else self.settings.max_examples - self._cs.n

    def feed(self, d: float) -> Decision:
        """Add one difference; the decision after it."""
        return self.feed_many(np.array([d], dtype=np.float64))

    def feed_many(self, ds: npt.ArrayLike) -> Decision:
        """Add differences in order, stopping at the first that reaches a verdict or the budget."""
        d = np.asarray(ds, dtype=np.float64).ravel()
        self._refuse_closed()
        if d.size and not np.all(np.abs(d) <= self.bound):  # also refuses NaN
            bad = d[~(np.abs(d) <= self.bound)][0]
            raise BadDifferenceError(
                f"loss difference {bad} is outside [-{self.bound}, {self.bound}]: clip each loss to "
                "[0, bound] first (driftloop_feedback.validate.losses does)"
            )
        d = d[: self.settings.max_examples - self._cs.n]
        if d.size == 0:
            return self.decision()
        batch = self._cs.scan((d + self.bound) / (2.0 * self.bound))
        lower = self._to_d(batch.lower)
        upper = self._to_d(batch.upper)
        n_after = batch.start_n + np.arange(1, d.size + 1)
        thr = self.settings.threshold
        may_decide = n_after >= self.settings.min_examples
        fails = may_decide & (lower > thr)
        passes = may_decide & (upper < thr)
        decided = np.flatnonzero(fails | passes)
        k = int(decided[0]) + 1 if decided.size else d.size
        self._cs.commit(batch, k)
        self._sum_d += float(d[:k].sum())
        if decided.size:
            self._verdict = "fail" if fails[k - 1] else "pass"
        return self.decision()

    def decision(self) -> Decision:
        n = self._cs.n
        lower, upper = self._cs.bounds()
        s = self.settings
        return Decision(
            verdict=self._verdict,
            lower=float(self._to_d(lower)),
            upper=float(self._to_d(upper)),
            mean=self._sum_d / n if n else float("nan"),
            n=n,
            alpha=s.alpha,
            margin=s.margin,
            mode=s.mode,
            threshold=s.threshold,
            bound=self.bound,
            method=METHOD,
            exhausted=self._verdict == "inconclusive" and n >= s.max_examples,
        )

    def _to_d(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.asarray(x, dtype=np.float64) * (2.0 * self.bound) - self.bound

    def _refuse_closed(self) -> None:
        decision = self.decision()
        if decision.concluded:
            why = "used its budget" if decision.exhausted else f"decided {decision.verdict!r}"
            raise SequenceClosedError(
                f"the paired test {why} at n={decision.n}: start a new PairedLossTest to test again"
            )
