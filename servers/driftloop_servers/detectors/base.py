"""The detector interface: two small protocols and their typed results.

A backend (alibi-detect, scikit-learn/scipy, or your own) implements ``OutlierDetector`` or
``DriftDetector``; the runtimes and the training code only see these types. Detectors are fitted by the
factory (``fit_outlier_detector`` / ``fit_drift_detector``) and persisted with ``save_detector``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class OutlierResult:
    """Per-row outlier scores (higher = more unusual), flags (score above threshold) and the threshold."""

    scores: np.ndarray
    flags: np.ndarray
    threshold: float


@dataclass(frozen=True)
class DriftResult:
    """Drift of one batch against the reference set.

    ``threshold_on`` says what ``threshold`` applies to: ``"p_value"`` (batch tests: drift when a feature's
    p-value is below it, correction included) or ``"distance"`` (online tests: drift when a feature's test
    statistic exceeds it; p-values are then NaN).
    """

    is_drift: bool
    p_values: np.ndarray
    distances: np.ndarray
    threshold: float
    threshold_on: Literal["p_value", "distance"]
    n_rows: int


@runtime_checkable
class OutlierDetector(Protocol):
    kind: str
    n_features: int
    threshold: float

    def score(self, x: np.ndarray) -> OutlierResult:
        """Score a float64 [N, F] batch (rows in time order for series detectors)."""
        ...


@runtime_checkable
class DriftDetector(Protocol):
    kind: str
    n_features: int

    def predict(self, x: np.ndarray) -> DriftResult:
        """Test a float64 [N, F] batch against the reference set."""
        ...


def flags_from_scores(scores: np.ndarray, threshold: float) -> OutlierResult:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    return OutlierResult(scores=scores, flags=scores > threshold, threshold=float(threshold))


def quantile_threshold(reference_scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the reference scores: the declared share of reference rows stays unflagged."""
    if not 0.0 < quantile < 1.0:
        from driftloop_servers.errors import DetectorError

        raise DetectorError(f"threshold_quantile must be in (0, 1), got {quantile}; e.g. 0.99")
    return float(np.quantile(np.asarray(reference_scores, dtype=np.float64), quantile))
