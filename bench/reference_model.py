"""The product's reference forecaster for benchmarks: trained on simulated pump telemetry and registered
(with its detectors) in the MLflow store of a throw-away ``DRIFTLOOP_HOME``, as ``make demo`` does."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from driftloop.learning.training import TrainingResult


def train_and_register(home: Path) -> tuple[TrainingResult, np.ndarray]:
    """Register ``pump-bearing-temp@champion`` (and its detectors) under ``home``; return the training
    result and 500 feature rows from the same telemetry to send."""
    from driftloop.learning.features import FeatureSpec, build_features
    from driftloop.learning.registration import publish
    from driftloop.learning.training import TrainingSettings, train
    from driftloop.registry import MlflowRegistry
    from driftloop.settings import StateSettings
    from driftloop.telemetry import SimulatorSettings, simulate_fleet

    state = StateSettings(home=home, mlflow_tracking_uri=None)
    started = time.perf_counter()
    telemetry = simulate_fleet(SimulatorSettings(assets=3, days=8, seed=0)).telemetry
    result = train(telemetry, FeatureSpec(), TrainingSettings(seed=0, reference_rows=1000))
    publish(result, MlflowRegistry(state.tracking_uri(), state.artifact_root()))
    print(f"reference model trained + registered in {time.perf_counter() - started:.1f} s", flush=True)
    rows: np.ndarray = build_features(telemetry, FeatureSpec()).X[:500]
    return result, rows
