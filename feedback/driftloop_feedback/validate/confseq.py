"""An anytime-valid confidence sequence for the mean of bounded values, updated in O(1) per value.

The method is the *predictable plug-in empirical-Bernstein* confidence sequence (PrPl-EB) of
Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting" (JRSS-B 2024,
arXiv:2010.09686, Theorem 2 and eqs. 13-15), for values ``x_t`` in ``[0, 1]``::

    mu_t    = (1/2 + sum_{i<=t} x_i) / (t + 1)                      (mu_0 = 1/2)
    var_t   = (1/4 + sum_{i<=t} (x_i - mu_i)^2) / (t + 1)           (var_0 = 1/4)
    lam_t   = min(sqrt(2 log(2/alpha) / (var_{t-1} t log(1 + t))), c)
    v_t     = 4 (x_t - mu_{t-1})^2,   psi(lam) = (-log(1 - lam) - lam) / 4
    centre  = sum lam_i x_i / sum lam_i
    width   = (log(2/alpha) + sum v_i psi(lam_i)) / sum lam_i
    C_t     = [centre - width, centre + width] intersected with [0, 1] and with C_{t-1}

With probability at least ``1 - alpha``, ``C_t`` holds the mean at every ``t`` at once (each side
misses with probability at most ``alpha / 2``), provided ``E[x_t | x_1..x_{t-1}] = mu`` for all ``t``
(independent and identically distributed values qualify; so do martingale differences around a
constant mean, with any dependence in the spread). Because the guarantee is uniform in time, the bounds
may be looked at after every value and acted on at any stopping time. The running intersection keeps
that guarantee (it only drops values every ``C_t`` excludes).

The state is a fixed handful of sums, so a value costs O(1) however long the sequence; a batch is
processed with cumulative sums, exactly the recursion above (``update`` is ``update_many`` of one).

>>> cs = BoundedMeanCS(alpha=0.05)
>>> _ = cs.update_many([0.5, 0.6, 0.4] * 200)
>>> lo, hi = cs.bounds()
>>> cs.n, lo < 0.5 < hi, round(hi - lo, 2)
(600, True, 0.03)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

METHOD = "predictable-plugin-empirical-bernstein-cs (Waudby-Smith & Ramdas 2024)"


@dataclass(frozen=True)
class CSBatch:
    """A batch scanned against a sequence's state, not yet added: the bounds after each value.

    ``BoundedMeanCS.commit(batch, k)`` adds its first ``k`` values, so a caller can stop at the first
    value where a decision is reached without recomputing anything.
    """

    start_n: int
    x: npt.NDArray[np.float64]
    sum_sq_dev: npt.NDArray[np.float64]
    var: npt.NDArray[np.float64]
    sum_lam: npt.NDArray[np.float64]
    sum_lam_x: npt.NDArray[np.float64]
    sum_v_psi: npt.NDArray[np.float64]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]


class BoundedMeanCS:
    """The PrPl-EB confidence sequence at level ``1 - alpha`` on the mean of values in ``[0, 1]``."""

    __slots__ = (
        "_log_term",
        "_sum_lam",
        "_sum_lam_x",
        "_sum_sq_dev",
        "_sum_v_psi",
        "_sum_x",
        "_var_prev",
        "alpha",
        "lower",
        "n",
        "truncation",
        "upper",
    )

    def __init__(self, alpha: float = 0.05, truncation: float = 0.5) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha={alpha} must be in (0, 1)")
        if not 0.0 < truncation < 1.0:
            raise ValueError(f"truncation={truncation} must be in (0, 1) (the paper uses 1/2 or 3/4)")
        self.alpha = alpha
        self.truncation = truncation
        self._log_term = math.log(2.0 / alpha)
        self.n = 0
        self._sum_x = 0.0  # sum x_i
        self._sum_sq_dev = 0.0  # sum (x_i - mu_i)^2
        self._var_prev = 0.25  # var_n: the next value's var_{t-1}
        self._sum_lam = 0.0
        self._sum_lam_x = 0.0
        self._sum_v_psi = 0.0
        self.lower = 0.0
        self.upper = 1.0

    def bounds(self) -> tuple[float, float]:
        """The running-intersection bounds after the last value (``(0, 1)`` before any)."""
        return self.lower, self.upper

    def update(self, x: float) -> tuple[float, float]:
        """Add one value in [0, 1]; returns the bounds after it."""
        self.update_many([x])
        return self.lower, self.upper

    def update_many(self, xs: npt.ArrayLike) -> CSBatch:
        """Add values in [0, 1] in order; returns the batch with the bounds after each one."""
        batch = self.scan(xs)
        self.commit(batch, batch.x.size)
        return batch

    def scan(self, xs: npt.ArrayLike) -> CSBatch:
        """The bounds after each of ``xs`` if they were added now; the state does not change."""
        x = np.asarray(xs, dtype=np.float64).ravel()
        if not np.all((x >= 0.0) & (x <= 1.0)):  # also refuses NaN
            raise ValueError("values must be finite and in [0, 1]")
        t = self.n + np.arange(1, x.size + 1, dtype=np.float64)
        mu = (0.5 + self._sum_x + np.cumsum(x)) / (t + 1.0)
        mu_prev = np.concatenate(([(0.5 + self._sum_x) / (self.n + 1.0)], mu[:-1]))
        sum_sq_dev = self._sum_sq_dev + np.cumsum((x - mu) ** 2)
        var = (0.25 + sum_sq_dev) / (t + 1.0)
        var_prev = np.concatenate(([self._var_prev], var[:-1]))
        lam = np.minimum(np.sqrt(2.0 * self._log_term / (var_prev * t * np.log1p(t))), self.truncation)
        v_psi = (x - mu_prev) ** 2 * (-np.log1p(-lam) - lam)  # v * psi(lam): the 4 and the 1/4 cancel
        sum_lam = self._sum_lam + np.cumsum(lam)
        sum_lam_x = self._sum_lam_x + np.cumsum(lam * x)
        sum_v_psi = self._sum_v_psi + np.cumsum(v_psi)
        centre = sum_lam_x / sum_lam
        width = (self._log_term + sum_v_psi) / sum_lam
        lower = np.maximum.accumulate(np.maximum(centre - width, self.lower))
        upper = np.minimum.accumulate(np.minimum(centre + width, self.upper))
        return CSBatch(self.n, x, sum_sq_dev, var, sum_lam, sum_lam_x, sum_v_psi, lower, upper)

    def commit(self, batch: CSBatch, k: int) -> None:
        """Add the first ``k`` values of a batch scanned from the current state."""
        if batch.start_n != self.n:
            raise ValueError(f"the batch was scanned at n={batch.start_n}, the sequence is at n={self.n}")
        if not 0 <= k <= batch.x.size:
            raise ValueError(f"k={k} is outside a batch of {batch.x.size}")
        if k == 0:
            return
        i = k - 1
        self.n += k
        self._sum_x += float(batch.x[:k].sum())
        self._sum_sq_dev = float(batch.sum_sq_dev[i])
        self._var_prev = float(batch.var[i])
        self._sum_lam = float(batch.sum_lam[i])
        self._sum_lam_x = float(batch.sum_lam_x[i])
        self._sum_v_psi = float(batch.sum_v_psi[i])
        self.lower = float(batch.lower[i])
        self.upper = float(batch.upper[i])
