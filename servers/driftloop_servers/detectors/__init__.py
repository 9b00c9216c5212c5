"""Detectors behind a small interface: protocols, typed results, a fitting factory and joblib persistence.

Backends: ``alibi-*`` kinds (alibi-detect, BSL 1.1) and ``sklearn-*`` / ``scipy-*`` kinds (permissive).
"""

from driftloop_servers.detectors.base import DriftDetector, DriftResult, OutlierDetector, OutlierResult
from driftloop_servers.detectors.factory import (
    DETECTOR_FILENAME,
    DRIFT_KINDS,
    OUTLIER_KINDS,
    fit_drift_detector,
    fit_outlier_detector,
    load_detector,
    save_detector,
)

__all__ = [
    "DETECTOR_FILENAME",
    "DRIFT_KINDS",
    "OUTLIER_KINDS",
    "DriftDetector",
    "DriftResult",
    "OutlierDetector",
    "OutlierResult",
    "fit_drift_detector",
    "fit_outlier_detector",
    "load_detector",
    "save_detector",
]
