"""Is the canary's outlier rate higher than main's by more than a margin? A stated one-sided test.

Rows are the ones the graph's outlier node scored in the interval (``driftloop_ingress_scored_rows``),
outliers the ones it flagged (``driftloop_ingress_outlier_rows``), per predictor. With ``p_c``, ``p_m``
the canary's and main's true outlier proportions and ``margin`` the allowed increase:

    H0: p_c - p_m <= margin   against   H1: p_c - p_m > margin

tested with the **Farrington-Manning score test** for a difference of two proportions (Farrington &
Manning 1990): z = (p̂_c - p̂_m - margin) / sqrt(p̃_c (1 - p̃_c) / n_c + p̃_m (1 - p̃_m) / n_m), where
p̃_c = p̃_m + margin are the maximum-likelihood proportions under the boundary of H0 (found with
``scipy.optimize``); p-value = P(Z > z) (``scipy.stats.norm``). A breach means H0 is rejected at
``alpha``: when the canary is in fact within the margin, a check breaches with probability at most
about ``alpha`` (the normal approximation; ``min_rows`` per side keeps it reasonable). With a margin of
0 it is the pooled two-proportion z-test. Fewer than ``min_rows`` scored rows on either side: no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import xlogy
from scipy.stats import norm

METHOD = "Farrington-Manning score test, one-sided"
_EPS = 1e-12


@dataclass(frozen=True)
class OutlierRateTest:
    canary_rows: float
    canary_outliers: float
    main_rows: float
    main_outliers: float
    margin: float
    alpha: float
    min_rows: int
    z: float | None  # None: no verdict
    p_value: float | None

    @property
    def canary_rate(self) -> float | None:
        return self.canary_outliers / self.canary_rows if self.canary_rows > 0 else None

    @property
    def main_rate(self) -> float | None:
        return self.main_outliers / self.main_rows if self.main_rows > 0 else None

    @property
    def decided(self) -> bool:
        return self.p_value is not None

    @property
    def breach(self) -> bool:
        return self.p_value is not None and self.p_value <= self.alpha

    def message(self) -> str:
        """What the test found, with its method, error rate, n and rate of each side."""
        c, m = self.canary_rate, self.main_rate
        sides = (
            f"canary outlier rate {_rate(c)} ({self.canary_outliers:.0f}/{self.canary_rows:.0f} rows) vs "
            f"main's {_rate(m)} ({self.main_outliers:.0f}/{self.main_rows:.0f} rows)"
        )
        if self.p_value is None:
            return (
                f"{sides}: no outlier verdict (fewer than {self.min_rows} scored rows on a side, or no "
                "variance)"
            )
        relation = "exceeds" if self.breach else "is not shown to exceed"
        return (
            f"{sides}: the canary's rate {relation} main's by more than {self.margin:g} "
            f"({METHOD}, z = {self.z:.2f}, p = {self.p_value:.3g}, alpha = {self.alpha:g})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "method": METHOD,
            "alpha": self.alpha,
            "margin": self.margin,
            "min_rows": self.min_rows,
            "canary_rows": self.canary_rows,
            "canary_outliers": self.canary_outliers,
            "main_rows": self.main_rows,
            "main_outliers": self.main_outliers,
            "z": self.z,
            "p_value": self.p_value,
            "verdict": "breach" if self.breach else ("within" if self.decided else "no verdict"),
        }


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _restricted_mle(x_c: float, n_c: float, x_m: float, n_m: float, margin: float) -> float:
    """Main's proportion maximising the likelihood of both sides subject to p_c = p_m + margin."""

    def nll(p_m: float) -> float:
        p_c = min(max(p_m + margin, _EPS), 1 - _EPS)
        p_m = min(max(p_m, _EPS), 1 - _EPS)
        ll = xlogy(x_c, p_c) + xlogy(n_c - x_c, 1 - p_c) + xlogy(x_m, p_m) + xlogy(n_m - x_m, 1 - p_m)
        return -float(ll)

    found = minimize_scalar(nll, bounds=(0.0, 1.0 - margin), method="bounded", options={"xatol": 1e-10})
    return float(np.clip(found.x, 0.0, 1.0 - margin))


def outlier_rate_test(
    *,
    canary_rows: float,
    canary_outliers: float,
    main_rows: float,
    main_outliers: float,
    margin: float,
    alpha: float,
    min_rows: int,
) -> OutlierRateTest:
    """Test H0: p_canary - p_main <= margin (see the module docstring)."""
    no_verdict = OutlierRateTest(
        canary_rows, canary_outliers, main_rows, main_outliers, margin, alpha, min_rows, None, None
    )
    if canary_rows < min_rows or main_rows < min_rows:
        return no_verdict
    p_m = _restricted_mle(canary_outliers, canary_rows, main_outliers, main_rows, margin)
    p_c = p_m + margin
    variance = p_c * (1 - p_c) / canary_rows + p_m * (1 - p_m) / main_rows
    difference = canary_outliers / canary_rows - main_outliers / main_rows - margin
    if variance <= 0 or not math.isfinite(variance):
        return no_verdict  # every row an outlier (or none) on both sides with no margin: nothing to test
    z = difference / math.sqrt(variance)
    return OutlierRateTest(
        canary_rows,
        canary_outliers,
        main_rows,
        main_outliers,
        margin,
        alpha,
        min_rows,
        z,
        float(norm.sf(z)),
    )
