"""A permissive backend (scikit-learn BSD-3, scipy BSD-3) for the detector interface.

It proves a backend other than alibi-detect (BSL 1.1 since 0.12) can serve the same runtimes:
``sklearn-iforest`` for outliers, ``scipy-ks`` and ``scipy-cvm`` for batch drift.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats
from sklearn.ensemble import IsolationForest

from driftloop_servers.detectors.base import (
    DriftResult,
    OutlierResult,
    flags_from_scores,
    quantile_threshold,
)


class SklearnIsolationForest:
    """Isolation forest; score = -score_samples (higher = more unusual), threshold at a reference quantile."""

    kind = "sklearn-iforest"

    def __init__(
        self, x_ref: np.ndarray, *, threshold_quantile: float = 0.99, n_estimators: int = 100, seed: int = 0
    ) -> None:
        self.n_features = int(x_ref.shape[1])
        self._forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(x_ref)
        self.threshold = quantile_threshold(self._raw_scores(x_ref), threshold_quantile)

    def _raw_scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(-self._forest.score_samples(x), dtype=np.float64)

    def score(self, x: np.ndarray) -> OutlierResult:
        return flags_from_scores(self._raw_scores(x), self.threshold)


class ScipyTwoSampleDrift:
    """Per-feature two-sample test (Kolmogorov-Smirnov or Cramer-von Mises) with Bonferroni correction."""

    def __init__(self, x_ref: np.ndarray, *, test: Literal["ks", "cvm"] = "ks", p_val: float = 0.05) -> None:
        self.kind = f"scipy-{test}"
        self.n_features = int(x_ref.shape[1])
        self._x_ref = np.array(x_ref, dtype=np.float64, copy=True)
        self._test = test
        self.p_val = p_val

    def predict(self, x: np.ndarray) -> DriftResult:
        p_values = np.empty(self.n_features)
        distances = np.empty(self.n_features)
        for j in range(self.n_features):
            if self._test == "ks":
                res = stats.ks_2samp(self._x_ref[:, j], x[:, j])
                p_values[j], distances[j] = res.pvalue, res.statistic
            else:
                res_cvm = stats.cramervonmises_2samp(self._x_ref[:, j], x[:, j])
                p_values[j], distances[j] = res_cvm.pvalue, res_cvm.statistic
        threshold = self.p_val / self.n_features
        return DriftResult(
            is_drift=bool((p_values < threshold).any()),
            p_values=p_values,
            distances=distances,
            threshold=threshold,
            threshold_on="p_value",
            n_rows=int(x.shape[0]),
        )
