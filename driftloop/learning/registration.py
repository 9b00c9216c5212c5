"""Publish a training result to the registry: the forecaster and both detectors, each as a new
version of its pinned name (docs/CONTRACTS.md), optionally under an alias."""

from __future__ import annotations

import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from driftloop.learning.training import TrainingResult
from driftloop.references import log_reference
from driftloop.registry import MlflowRegistry, ModelVersionRef

MODEL_NAME = "pump-bearing-temp"
OUTLIER_NAME = "pump-bearing-temp-outlier"
DRIFT_NAME = "pump-bearing-temp-drift"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class PublishedVersions:
    model: ModelVersionRef
    outlier: ModelVersionRef
    drift: ModelVersionRef


class FittedDetectors(Protocol):
    """What ``publish_detectors`` registers: a ``TrainingResult``'s detectors, or another training's
    (the live replay's, fitted with ``training.fit_detectors``)."""

    @property
    def outlier_detector(self) -> Any: ...

    @property
    def drift_detector(self) -> Any: ...

    @property
    def reference(self) -> np.ndarray: ...

    @property
    def feature_names(self) -> list[str]: ...


def model_pip_requirements() -> list[str]:
    """What an environment needs to unpickle a served estimator: its class lives in
    ``driftloop_servers.estimators`` (old pickles: ``driftloop.learning.estimator``, a re-export), both
    shipped in the ``driftloop`` distribution, and wraps scikit-learn objects on numpy arrays."""
    names = ("scikit-learn", "numpy", "driftloop")
    return [f"{name}=={importlib.metadata.version(name)}" for name in names]


def publish_model(
    result: TrainingResult, registry: MlflowRegistry, *, name: str = MODEL_NAME, alias: str | None = CHAMPION
) -> ModelVersionRef:
    ref = registry.register_sklearn_model(
        name,
        result.model,
        input_example=result.reference[:5],
        pip_requirements=model_pip_requirements(),
        params=result.params(),
        metrics=result.metrics.as_dict(),
        tags={"driftloop.kind": "forecaster", "driftloop.feature_names": ",".join(result.feature_names)},
    )
    if ref.run_id is not None:  # the drift monitor tests this version's traffic against its reference
        log_reference(registry, ref.run_id, result.reference, result.feature_names)
    if alias:  # only once the reference is there: whoever follows the alias finds it
        registry.set_alias(name, alias, ref.version)
    return ref


def publish_detectors(
    result: FittedDetectors,
    registry: MlflowRegistry,
    *,
    outlier_name: str = OUTLIER_NAME,
    drift_name: str = DRIFT_NAME,
    alias: str | None = CHAMPION,
) -> tuple[ModelVersionRef, ModelVersionRef]:
    from driftloop_servers.detectors import save_detector

    refs = []
    for name, detector, kind in (
        (outlier_name, result.outlier_detector, "outlier"),
        (drift_name, result.drift_detector, "drift"),
    ):
        with tempfile.TemporaryDirectory(prefix="driftloop-detector-") as tmp:
            folder = Path(tmp)
            save_detector(detector, folder)
            params = {
                "detector_kind": detector.kind,
                "n_features": detector.n_features,
                "reference_rows": len(result.reference),
                "feature_names": ",".join(result.feature_names),
            }
            if hasattr(detector, "threshold"):
                params["threshold"] = detector.threshold
            refs.append(
                registry.register_artifact_folder(
                    name, folder, params=params, tags={"driftloop.kind": kind}, alias=alias
                )
            )
    return refs[0], refs[1]


def publish(
    result: TrainingResult, registry: MlflowRegistry, *, alias: str | None = CHAMPION
) -> PublishedVersions:
    """Register the forecaster and both detectors; ``alias`` (default champion) points at the new ones."""
    model = publish_model(result, registry, alias=alias)
    outlier, drift = publish_detectors(result, registry, alias=alias)
    return PublishedVersions(model=model, outlier=outlier, drift=drift)
