"""Drift references in a real MLflow store (sqlite + artifact folder): logged with a version's run,
loaded by version, logged by publish_model, and the registry source's fallback to the drift detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.registry_source import RegistryReferenceSource

from driftloop.learning.features import FeatureSpec
from driftloop.learning.registration import DRIFT_NAME, MODEL_NAME, publish
from driftloop.learning.training import TrainingSettings, train
from driftloop.references import DriftReferenceError, ReferenceNotFound, load_reference, log_reference
from driftloop.registry import MlflowRegistry
from driftloop.settings import StateSettings
from driftloop.telemetry import SimulatorSettings, simulate_fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> MlflowRegistry:
    state = StateSettings(home=tmp_path_factory.mktemp("monitor-registry"), mlflow_tracking_uri=None)
    return MlflowRegistry(state.tracking_uri(), state.artifact_root())


def test_publish_logs_the_reference_and_a_new_champion_brings_its_own(registry: MlflowRegistry) -> None:
    telemetry = simulate_fleet(SimulatorSettings(assets=2, days=3, seed=4)).telemetry
    settings = TrainingSettings(
        seed=4, drift_kind="scipy-ks", reference_rows=200, outlier_kind="sklearn-iforest"
    )
    result = train(telemetry, FeatureSpec(), settings)
    first = publish(result, registry)
    loaded = load_reference(registry, MODEL_NAME, first.model.version)
    np.testing.assert_array_equal(loaded.data, result.reference)
    assert list(loaded.feature_names) == result.feature_names
    assert registry.get_alias(MODEL_NAME, "champion").version == first.model.version

    # a candidate registered by someone else (the trainer) logs its own reference with its run
    shifted = result.reference + 5.0
    ref = registry.register_sklearn_model(
        MODEL_NAME, result.model, input_example=shifted[:5], pip_requirements=["numpy"], alias="champion"
    )
    assert ref.run_id is not None
    log_reference(registry, ref.run_id, shifted, result.feature_names)
    source = RegistryReferenceSource(registry, MODEL_NAME, DRIFT_NAME)
    np.testing.assert_array_equal(source.reference(str(ref.version)).data, shifted)
    np.testing.assert_array_equal(source.reference(str(first.model.version)).data, result.reference)

    # a version without a reference: the source says so, and falls back to the drift detector @champion
    bare = registry.register_sklearn_model(
        MODEL_NAME, result.model, input_example=shifted[:5], pip_requirements=["numpy"]
    )
    with pytest.raises(ReferenceNotFound, match="no drift-reference/ artifact"):
        source.reference(str(bare.version))
    detector, names, where = source.fallback(str(bare.version))
    assert where == f"models:/{DRIFT_NAME}/{first.drift.version}"
    assert names == tuple(result.feature_names)  # the columns the detector was fitted on
    assert detector.predict(result.reference[:100] + 10.0).is_drift  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not a registered version number"):
        source.reference("mlserver-1")


def test_a_reference_must_name_every_column(tmp_path: Path, registry: MlflowRegistry) -> None:
    with pytest.raises(DriftReferenceError, match="2 feature names for 3 reference columns"):
        log_reference(registry, "no-run-needed", np.zeros((4, 3)), ["a", "b"])
    with pytest.raises(DriftReferenceError, match="NaN"):
        log_reference(registry, "no-run-needed", np.array([[1.0], [np.nan]]), ["a"])
