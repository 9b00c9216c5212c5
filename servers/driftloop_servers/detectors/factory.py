"""Fit detectors from reference data, and persist them with joblib.

Example (the permissive backend; ``alibi-*`` kinds work the same way)::

    >>> import numpy as np
    >>> x_ref = np.random.default_rng(0).normal(size=(300, 3))
    >>> det = fit_outlier_detector("sklearn-iforest", x_ref, threshold_quantile=0.99)
    >>> result = det.score(np.array([[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]))
    >>> result.flags.tolist()
    [False, True]
    >>> fit_drift_detector("scipy-ks", x_ref).predict(x_ref[:100] + 3.0).is_drift
    True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from driftloop_servers.detectors.base import DriftDetector, OutlierDetector
from driftloop_servers.errors import DetectorError

DETECTOR_FILENAME = "detector.joblib"
_FORMAT = "driftloop-detector"
_FORMAT_VERSION = 1


def _alibi(name: str) -> Callable[..., Any]:
    def build(x_ref: np.ndarray, **opts: Any) -> Any:
        from driftloop_servers.detectors import alibi

        return getattr(alibi, name)(x_ref, **opts)

    return build


def _permissive(name: str, **fixed: Any) -> Callable[..., Any]:
    def build(x_ref: np.ndarray, **opts: Any) -> Any:
        from driftloop_servers.detectors import permissive

        return getattr(permissive, name)(x_ref, **fixed, **opts)

    return build


def _alibi_drift(test: str) -> Callable[..., Any]:
    def build(x_ref: np.ndarray, **opts: Any) -> Any:
        from driftloop_servers.detectors.alibi import AlibiBatchDrift

        return AlibiBatchDrift(x_ref, test=test, **opts)  # type: ignore[arg-type]

    return build


OUTLIER_KINDS: dict[str, Callable[..., Any]] = {
    "alibi-iforest": _alibi("AlibiIForest"),
    "alibi-mahalanobis": _alibi("AlibiMahalanobis"),
    "alibi-spectral-residual": _alibi("AlibiSpectralResidual"),
    "sklearn-iforest": _permissive("SklearnIsolationForest"),
}

DRIFT_KINDS: dict[str, Callable[..., Any]] = {
    "alibi-ks": _alibi_drift("ks"),
    "alibi-cvm": _alibi_drift("cvm"),
    "alibi-cvm-online": _alibi("AlibiCVMOnline"),
    "scipy-ks": _permissive("ScipyTwoSampleDrift", test="ks"),
    "scipy-cvm": _permissive("ScipyTwoSampleDrift", test="cvm"),
}


def _reference(x_ref: Any) -> np.ndarray:
    x = np.asarray(x_ref, dtype=np.float64)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DetectorError(f"reference data must be a [N, F] matrix with N >= 2; got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise DetectorError("reference data holds NaN/inf; drop or impute those rows before fitting")
    return x


def _fit(kinds: dict[str, Callable[..., Any]], what: str, kind: str, x_ref: Any, opts: dict[str, Any]) -> Any:
    build = kinds.get(kind)
    if build is None:
        known = ", ".join(sorted(kinds))
        raise DetectorError(f"unknown {what} detector kind {kind!r}; choose one of {known}")
    x = _reference(x_ref)
    try:
        return build(x, **opts)
    except TypeError as exc:
        raise DetectorError(f"{kind}: invalid option(s) {sorted(opts)}: {exc}") from None


def fit_outlier_detector(kind: str, x_ref: Any, **opts: Any) -> OutlierDetector:
    """Fit an outlier detector of ``kind`` on reference rows; its threshold is the
    ``threshold_quantile`` (default 0.99) of the reference scores."""
    detector: OutlierDetector = _fit(OUTLIER_KINDS, "outlier", kind, x_ref, opts)
    return detector


def fit_drift_detector(kind: str, x_ref: Any, **opts: Any) -> DriftDetector:
    """Fit a drift detector of ``kind`` on reference rows (batch: ``p_val``; online: ``ert``,
    ``window_sizes``, ``n_bootstraps``)."""
    detector: DriftDetector = _fit(DRIFT_KINDS, "drift", kind, x_ref, opts)
    return detector


def save_detector(detector: OutlierDetector | DriftDetector, path: str | Path) -> Path:
    """Write ``detector`` with joblib. A ``path`` ending in ``.joblib`` is the file; any other path is a
    folder (created if needed) that gets ``detector.joblib``, the layout the runtimes read from MLflow."""
    target = Path(path)
    if target.suffix != ".joblib":
        target = target / DETECTOR_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    envelope = {"format": _FORMAT, "version": _FORMAT_VERSION, "kind": detector.kind, "detector": detector}
    joblib.dump(envelope, target)
    return target


def load_detector(path: str | Path) -> OutlierDetector | DriftDetector:
    """Read a detector written by ``save_detector`` (a file, or a directory holding ``detector.joblib``)."""
    source = Path(path)
    if source.is_dir():
        source = source / DETECTOR_FILENAME
    if not source.is_file():
        raise DetectorError(f"no detector at {source}; write one with save_detector(detector, path)")
    try:
        envelope = joblib.load(source)
    except Exception as exc:  # unpickling reports many error types
        raise DetectorError(f"cannot read detector {source}: {type(exc).__name__}: {exc}") from None
    if not isinstance(envelope, dict) or envelope.get("format") != _FORMAT:
        raise DetectorError(f"{source} is not a driftloop detector; write one with save_detector")
    if envelope.get("version") != _FORMAT_VERSION:
        raise DetectorError(
            f"{source} has detector format version {envelope.get('version')}; this driftloop reads "
            f"version {_FORMAT_VERSION}: refit the detector"
        )
    detector = envelope["detector"]
    if not isinstance(detector, (OutlierDetector, DriftDetector)):
        raise DetectorError(f"{source} holds {type(detector).__name__}, which is not a detector")
    return detector
