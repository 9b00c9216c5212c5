"""Train the initial forecaster and fit the outlier and drift references from a telemetry table.

The table is split by time (the first part trains, the most recent part validates: no peeking into the
future); the model is scored against the persistence baseline "the temperature stays as it is", which is
the bar any forecaster must clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from driftloop_servers.estimators import IncrementalRegressor
from pydantic import BaseModel, Field

from driftloop.errors import DriftloopError
from driftloop.learning.features import FeatureSpec, FeatureTable, build_features


class TrainingError(DriftloopError):
    """Training cannot go ahead; the message says what the data lacks."""


class TrainingSettings(BaseModel):
    """How to train; every default reproduces the reference use case."""

    seed: int = Field(default=0, description="seed of the estimator and the reference subsamples")
    validation_fraction: float = Field(default=0.25, gt=0, lt=1, description="most recent share held out")
    epochs: int = Field(default=10, ge=1, description="SGD passes over the training rows")
    alpha: float = Field(default=1e-5, ge=0, description="L2 penalty of the SGD regressor")
    eta0: float = Field(default=0.03, gt=0, description="initial SGD learning rate")
    outlier_kind: str = Field(
        default="alibi-mahalanobis",
        description="outlier detector kind (driftloop_servers.detectors); Mahalanobis sees a reading that "
        "breaks the correlation between sensors (a spike: temperature now vs 15 min ago), IForest does not",
    )
    outlier_threshold_quantile: float = Field(default=0.995, gt=0, lt=1)
    outlier_reference_trim: float = Field(
        default=0.02,
        ge=0,
        lt=0.5,
        description="share of the most unusual reference rows (sensor faults in the history) left out "
        "before the outlier detector is fitted and its threshold set",
    )
    drift_kind: str = Field(default="alibi-ks", description="drift detector kind (part A factory)")
    drift_p_val: float = Field(default=0.05, gt=0, lt=1)
    reference_rows: int = Field(default=2000, ge=50, description="rows in the drift/outlier references")
    min_rows: int = Field(default=200, ge=10, description="refuse to train on fewer labelled rows")


@dataclass(frozen=True)
class ForecastMetrics:
    """Validation errors of the model and of the persistence baseline, same rows."""

    mae: float
    rmse: float
    baseline_mae: float
    baseline_rmse: float
    n_train: int
    n_validation: int
    dropped_missing: int

    @property
    def skill(self) -> float:
        """1 - MAE / baseline MAE: above 0 means better than persistence."""
        return 1.0 - self.mae / self.baseline_mae if self.baseline_mae > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "val_mae": self.mae,
            "val_rmse": self.rmse,
            "val_persistence_mae": self.baseline_mae,
            "val_persistence_rmse": self.baseline_rmse,
            "val_skill_vs_persistence": self.skill,
            "n_train": float(self.n_train),
            "n_validation": float(self.n_validation),
            "dropped_missing_rows": float(self.dropped_missing),
        }


@dataclass(frozen=True)
class TrainingResult:
    model: IncrementalRegressor
    spec: FeatureSpec
    settings: TrainingSettings
    metrics: ForecastMetrics
    outlier_detector: Any  # driftloop_servers.detectors.OutlierDetector
    drift_detector: Any  # driftloop_servers.detectors.DriftDetector
    reference: np.ndarray  # the rows both detectors were fitted on

    @property
    def feature_names(self) -> list[str]:
        return self.spec.feature_names

    def params(self) -> dict[str, Any]:
        return {
            **{f"train_{k}": v for k, v in self.settings.model_dump().items()},
            "horizon_s": self.spec.horizon_s,
            "lag_s": self.spec.lag_s,
            "target": self.spec.schema_.target_col,
            "feature_names": ",".join(self.feature_names),
        }


def split_by_time(features: FeatureTable, validation_fraction: float) -> tuple[FeatureTable, FeatureTable]:
    cutoff = np.quantile(features.event_time, 1.0 - validation_fraction)
    early = features.event_time < cutoff
    return features.select(early), features.select(~early)


def _errors(y: np.ndarray, y_hat: np.ndarray) -> tuple[float, float]:
    err = y_hat - y
    return float(np.abs(err).mean()), float(np.sqrt((err**2).mean()))


def _reference_rows(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(X) <= n:
        return X
    rows = np.random.default_rng(seed).choice(len(X), size=n, replace=False)
    return X[np.sort(rows)]


def train(table: pd.DataFrame, spec: FeatureSpec, settings: TrainingSettings | None = None) -> TrainingResult:
    """Build features, train the forecaster, score it against persistence, fit both detectors."""
    settings = settings or TrainingSettings()
    features = build_features(table, spec)
    if len(features) < settings.min_rows:
        raise TrainingError(
            f"only {len(features)} labelled rows (after dropping {features.dropped_missing} with missing "
            f"values or no value {spec.horizon_s:g}s later); need at least {settings.min_rows}: "
            "give more history or check the time column's units (unix seconds) and --horizon-s"
        )
    train_rows, validation_rows = split_by_time(features, settings.validation_fraction)
    model = IncrementalRegressor(
        alpha=settings.alpha, eta0=settings.eta0, epochs=settings.epochs, random_state=settings.seed
    ).fit(train_rows.X, train_rows.y)

    target_now = validation_rows.X[:, features.feature_names.index(spec.schema_.target_col)]
    mae, rmse = _errors(validation_rows.y, model.predict(validation_rows.X))
    base_mae, base_rmse = _errors(validation_rows.y, target_now)
    metrics = ForecastMetrics(
        mae=mae,
        rmse=rmse,
        baseline_mae=base_mae,
        baseline_rmse=base_rmse,
        n_train=len(train_rows),
        n_validation=len(validation_rows),
        dropped_missing=features.dropped_missing,
    )
    outlier, drift, reference = fit_detectors(train_rows.X, settings)
    return TrainingResult(model, spec, settings, metrics, outlier, drift, reference)


def fit_detectors(rows: np.ndarray, settings: TrainingSettings) -> tuple[Any, Any, np.ndarray]:
    """The outlier and drift detectors of ``rows`` (training inputs): both fitted on a reference of at
    most ``reference_rows`` of them; the outlier detector refitted without the ``outlier_reference_trim``
    most unusual reference rows. Returns (outlier, drift, reference)."""
    from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector

    reference = _reference_rows(rows, settings.reference_rows, settings.seed)
    outlier = fit_outlier_detector(
        settings.outlier_kind, reference, threshold_quantile=settings.outlier_threshold_quantile
    )
    if settings.outlier_reference_trim > 0:
        scores = outlier.score(reference).scores
        typical = scores <= np.quantile(scores, 1.0 - settings.outlier_reference_trim)
        outlier = fit_outlier_detector(
            settings.outlier_kind, reference[typical], threshold_quantile=settings.outlier_threshold_quantile
        )
    drift = fit_drift_detector(settings.drift_kind, reference, p_val=settings.drift_p_val)
    return outlier, drift, reference
