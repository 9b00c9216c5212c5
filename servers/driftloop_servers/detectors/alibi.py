"""The alibi-detect backend (BSL 1.1 since alibi-detect 0.12: production use needs a licence from Seldon).

alibi-detect is imported inside the constructors only: importing it costs about 3 s, and a process that
loads a pickled detector imports it then. Results are converted to the typed ``OutlierResult`` /
``DriftResult`` instead of alibi's ``{"data", "meta"}`` dicts.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import numpy as np

from driftloop_servers.detectors.base import (
    DriftResult,
    OutlierResult,
    flags_from_scores,
    quantile_threshold,
)
from driftloop_servers.errors import DetectorError


class AlibiIForest:
    """alibi-detect ``IForest`` on feature vectors; threshold at a quantile of the reference scores."""

    kind = "alibi-iforest"

    def __init__(
        self, x_ref: np.ndarray, *, threshold_quantile: float = 0.99, n_estimators: int = 100, seed: int = 0
    ) -> None:
        from alibi_detect.od import IForest

        self.n_features = int(x_ref.shape[1])
        # driftloop sets thresholds itself (a reference quantile); a placeholder keeps alibi from warning
        self._detector = IForest(threshold=np.inf, n_estimators=n_estimators)
        self._detector.isolationforest.set_params(random_state=seed)
        self._detector.fit(x_ref)
        self.threshold = quantile_threshold(self._detector.score(x_ref), threshold_quantile)

    def score(self, x: np.ndarray) -> OutlierResult:
        return flags_from_scores(self._detector.score(x), self.threshold)


class AlibiMahalanobis:
    """alibi-detect ``Mahalanobis`` on feature vectors.

    alibi's Mahalanobis is an online detector: every ``score`` call updates its running mean and
    covariance. Warmed up on the reference set, it is by default frozen (each batch is scored on a copy),
    so a served detector gives the same answer for the same rows in every worker; ``update_state=True``
    keeps alibi's behaviour (state then lives in, and dies with, the process). Within one batch alibi
    still updates its estimate row by row, so a row's score depends slightly on the rows before it.

    ``n_components`` defaults to every feature (the textbook Mahalanobis distance). alibi's own default
    (3) keeps only the top principal components, which hides readings that break the correlation between
    sensors: such readings show up in the low-variance components.
    """

    kind = "alibi-mahalanobis"

    def __init__(
        self,
        x_ref: np.ndarray,
        *,
        threshold_quantile: float = 0.99,
        n_components: int | None = None,
        std_clip: int = 3,
        start_clip: int = 100,
        update_state: bool = False,
    ) -> None:
        from alibi_detect.od import Mahalanobis

        self.n_features = int(x_ref.shape[1])
        self.update_state = update_state
        self._detector = Mahalanobis(
            threshold=np.inf,
            n_components=n_components or self.n_features,
            std_clip=std_clip,
            start_clip=start_clip,
        )
        self._detector.score(x_ref)  # warm-up: learns mean and covariance of the reference set
        probe = copy.deepcopy(self._detector)
        self.threshold = quantile_threshold(probe.score(x_ref), threshold_quantile)

    def score(self, x: np.ndarray) -> OutlierResult:
        detector = self._detector if self.update_state else copy.deepcopy(self._detector)
        return flags_from_scores(detector.score(x), self.threshold)


class AlibiSpectralResidual:
    """alibi-detect ``SpectralResidual`` on a univariate series (F = 1, rows in time order).

    A request must carry a stretch of the series longer than ``window_amp``/``window_local``; the scores
    of its rows are relative to that stretch.
    """

    kind = "alibi-spectral-residual"

    def __init__(
        self,
        x_ref: np.ndarray,
        *,
        threshold_quantile: float = 0.99,
        window_amp: int = 20,
        window_local: int = 20,
        n_est_points: int = 10,
        n_grad_points: int = 5,
    ) -> None:
        from alibi_detect.od import SpectralResidual

        if x_ref.shape[1] != 1:
            raise DetectorError(
                f"alibi-spectral-residual scores a univariate series; got {x_ref.shape[1]} features. "
                "Pass one column (e.g. the bearing temperature) or use alibi-iforest/alibi-mahalanobis"
            )
        self.n_features = 1
        self.min_rows = max(window_amp, window_local) + 1
        self._detector = SpectralResidual(
            threshold=np.inf,
            window_amp=window_amp,
            window_local=window_local,
            n_est_points=n_est_points,
            n_grad_points=n_grad_points,
        )
        self.threshold = quantile_threshold(self._scores(x_ref), threshold_quantile)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        if x.shape[0] < self.min_rows:
            raise DetectorError(
                f"alibi-spectral-residual needs at least {self.min_rows} consecutive points per batch "
                f"(window_amp/window_local); got {x.shape[0]}"
            )
        return np.asarray(self._detector.score(x[:, 0]), dtype=np.float64)

    def score(self, x: np.ndarray) -> OutlierResult:
        return flags_from_scores(self._scores(x), self.threshold)


class AlibiBatchDrift:
    """alibi-detect ``KSDrift`` / ``CVMDrift``: per-feature tests, Bonferroni-corrected."""

    def __init__(
        self, x_ref: np.ndarray, *, test: Literal["ks", "cvm"] = "ks", p_val: float = 0.05, **opts: Any
    ) -> None:
        from alibi_detect.cd import CVMDrift, KSDrift

        self.kind = f"alibi-{test}"
        self.n_features = int(x_ref.shape[1])
        cls = KSDrift if test == "ks" else CVMDrift
        self._detector = cls(np.asarray(x_ref, dtype=np.float64), p_val=p_val, **opts)

    def predict(self, x: np.ndarray) -> DriftResult:
        out = self._detector.predict(x, drift_type="batch", return_p_val=True, return_distance=True)["data"]
        return DriftResult(
            is_drift=bool(out["is_drift"]),
            p_values=np.asarray(out["p_val"], dtype=np.float64).ravel(),
            distances=np.asarray(out["distance"], dtype=np.float64).ravel(),
            threshold=float(out["threshold"]),
            threshold_on="p_value",
            n_rows=int(x.shape[0]),
        )


class AlibiCVMOnline:
    """alibi-detect ``CVMDriftOnline``: rows are fed one at a time in order; drift when a window's CVM
    statistic crosses the threshold configured for the expected run time ``ert``.

    Threshold configuration runs at fit time (about 13 s at ert=150, n_bootstraps=10000; use small values
    in tests). The online state (the windows seen so far) lives in the detector object, so in a runtime it
    lives in the process: a restart or a second worker starts from an empty window.
    """

    kind = "alibi-cvm-online"

    def __init__(
        self,
        x_ref: np.ndarray,
        *,
        ert: float = 150.0,
        window_sizes: tuple[int, ...] = (20,),
        n_bootstraps: int = 10000,
        batch_size: int = 64,
        seed: int | None = 0,
    ) -> None:
        from alibi_detect.cd import CVMDriftOnline

        self.n_features = int(x_ref.shape[1])
        # alibi simulates the threshold streams with NumPy's global generator: seed it for reproducible
        # thresholds, and give the caller's generator state back afterwards
        saved = np.random.get_state()
        if seed is not None:
            np.random.seed(seed)
        try:
            self._detector = CVMDriftOnline(
                np.asarray(x_ref, dtype=np.float64),
                ert=ert,
                window_sizes=list(window_sizes),
                n_bootstraps=n_bootstraps,
                batch_size=batch_size,
                verbose=False,
            )
        finally:
            np.random.set_state(saved)

    @property
    def time(self) -> int:
        return int(self._detector.t)

    def reset(self) -> None:
        self._detector.reset_state()

    def predict(self, x: np.ndarray) -> DriftResult:
        is_drift = False
        stats = np.full(self.n_features, np.nan)
        threshold = float("nan")
        for row in x:
            out = self._detector.predict(row, return_test_stat=True)["data"]
            is_drift = is_drift or bool(out["is_drift"])
            window_stats = np.asarray(out["test_stat"], dtype=np.float64).reshape(-1, self.n_features)
            stats = _nanmax_columns(window_stats)
            threshold = float(np.asarray(out["threshold"], dtype=np.float64).ravel()[0])
        return DriftResult(
            is_drift=is_drift,
            p_values=np.full(self.n_features, np.nan),
            distances=stats,
            threshold=threshold,
            threshold_on="distance",
            n_rows=int(x.shape[0]),
        )


def _nanmax_columns(values: np.ndarray) -> np.ndarray:
    finite = np.where(np.isnan(values), -np.inf, values)
    best = finite.max(axis=0)
    return np.where(np.isneginf(best), np.nan, best)
