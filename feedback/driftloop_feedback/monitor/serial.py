"""Drift tests on serially dependent rows: the KS p-value taken at an effective sample size.

A two-sample Kolmogorov-Smirnov test assumes independent rows. Rows of a time series (a plant's
readings, one after the other) are not: a window of 500 autocorrelated readings holds far less
information than 500 independent ones, the textbook p-value is far too small, and the test flags
nearly every window of a process that merely wanders. With ``serial="ar1"`` the monitor keeps the KS
statistic D the detector computed and takes its p-value at an effective sample size instead:

- each feature's lag-1 autocorrelation r, in row order (log order for a window, stored order for a
  reference), clipped to [0, ``MAX_LAG1``] (a negative r would claim more information than the rows
  hold: not credited);
- effective rows n(1 - r) / (1 + r), the variance inflation of the mean of an AR(1) process
  (Bayley and Hammersley), at least 1;
- the asymptotic Kolmogorov distribution at en = n_w n_r / (n_w + n_r) with Stephens' small-sample
  term: p = Q((sqrt(en) + 0.12 + 0.11 / sqrt(en)) D).

Then the same correction across features as the detector's (Bonferroni, or Benjamini-Hochberg for
``fdr``) at the same alpha. For independent rows r is near 0 and the p-values are the textbook ones.
Assumption, stated: the dependence is close to AR(1); a process with long memory is still
under-corrected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

MAX_LAG1 = 0.99


def lag1(x: np.ndarray) -> np.ndarray:
    """Each column's lag-1 autocorrelation in row order, clipped to [0, MAX_LAG1]; 0 for < 3 rows or a
    constant column."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        return np.zeros(x.shape[1] if x.ndim == 2 else 0)
    centred = x - x.mean(axis=0)
    denominator = (centred**2).sum(axis=0)
    numerator = (centred[1:] * centred[:-1]).sum(axis=0)
    constant = np.ptp(x, axis=0) == 0  # its centred values are rounding leftovers, not a series
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((denominator > 0) & ~constant, numerator / denominator, 0.0)
    return np.clip(np.nan_to_num(r), 0.0, MAX_LAG1)


def effective_rows(n: int, r: np.ndarray) -> np.ndarray:
    """n(1 - r)/(1 + r) per column, at least 1."""
    return np.maximum(1.0, n * (1.0 - r) / (1.0 + r))


def ks_p_values(distances: np.ndarray, n_window: np.ndarray, n_reference: np.ndarray | None) -> np.ndarray:
    """Two-sided KS p-values of statistics ``distances`` at effective sizes (asymptotic, Stephens); with
    ``n_reference`` None (its size unknown) the window's size alone."""
    en = n_window if n_reference is None else n_window * n_reference / (n_window + n_reference)
    root = np.sqrt(en)
    return np.asarray(stats.kstwobign.sf((root + 0.12 + 0.11 / root) * distances), dtype=np.float64)


def decide(p_values: np.ndarray, alpha: float, correction: str) -> tuple[bool, float]:
    """Drift or not across features, and the p-value threshold that decided it: Bonferroni alpha/F;
    Benjamini-Hochberg (``fdr``) the largest cutoff k alpha/F met by the k-th smallest p-value (alpha/F
    when none is)."""
    p = np.asarray(p_values, dtype=np.float64)
    features = len(p)
    first = alpha / features
    if correction != "fdr":
        return bool((p < first).any()), first
    ranked = np.sort(p)
    cutoffs = alpha * np.arange(1, features + 1) / features
    met = np.flatnonzero(ranked <= cutoffs)
    if len(met) == 0:
        return False, first
    return True, float(cutoffs[met[-1]])


@dataclass(frozen=True)
class SerialTest:
    """The ``ar1`` re-reading of one window's KS statistics."""

    p_values: np.ndarray
    effective_window: np.ndarray
    effective_reference: np.ndarray | None  # None: the reference's size is unknown
    is_drift: bool
    threshold: float


def ar1_test(
    distances: np.ndarray,
    window: np.ndarray,
    reference_lag1: np.ndarray,
    reference_rows: int | None,
    *,
    alpha: float,
    correction: str,
) -> SerialTest:
    """Re-take the p-values of KS ``distances`` (one per column of ``window``) at effective sizes."""
    n_window = effective_rows(window.shape[0], lag1(window))
    n_reference = None if reference_rows is None else effective_rows(reference_rows, reference_lag1)
    p = ks_p_values(np.asarray(distances, dtype=np.float64), n_window, n_reference)
    is_drift, threshold = decide(p, alpha, correction)
    return SerialTest(p, n_window, n_reference, is_drift, threshold)
