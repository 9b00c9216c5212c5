"""The MLflow registry adapter against a real MLflow sqlite store and artifact folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from driftloop.learning.features import FeatureSpec
from driftloop.learning.registration import (
    DRIFT_NAME,
    MODEL_NAME,
    OUTLIER_NAME,
    PublishedVersions,
    model_pip_requirements,
    publish,
)
from driftloop.learning.training import TrainingResult, TrainingSettings, train
from driftloop.registry import MlflowRegistry, RegistryError, parse_models_uri
from driftloop.settings import StateSettings
from driftloop.telemetry import SimulatorSettings, simulate_fleet

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[MlflowRegistry, TrainingResult, PublishedVersions]:
    state = StateSettings(home=tmp_path_factory.mktemp("registry-home"), mlflow_tracking_uri=None)
    registry = MlflowRegistry(state.tracking_uri(), state.artifact_root())
    telemetry = simulate_fleet(SimulatorSettings(assets=2, days=5, seed=9)).telemetry
    result = train(
        telemetry, FeatureSpec(), TrainingSettings(seed=9, drift_kind="scipy-ks", reference_rows=300)
    )
    return registry, result, publish(result, registry)


def test_registered_model_loads_by_alias_and_predicts_the_same(published) -> None:  # type: ignore[no-untyped-def]
    registry, result, versions = published
    assert registry.resolve("models:/pump-bearing-temp@champion") == versions.model
    loaded = registry.load_sklearn_model(f"models:/{MODEL_NAME}@champion")
    X = result.reference[:20]
    np.testing.assert_array_equal(loaded.predict(X), result.model.predict(X))
    loaded.partial_fit(X, result.model.predict(X))  # still an incremental learner after the round trip


def test_model_folder_has_signature_pickle_and_explicit_requirements(published, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry, _, versions = published
    folder = registry.download(versions.model.uri, tmp_path)
    mlmodel = (folder / "MLmodel").read_text()
    assert "signature:" in mlmodel and '"shape": [-1, 8]' in mlmodel
    assert "serialization_format: pickle" in mlmodel
    assert (folder / "model.pkl").is_file()
    requirements = (folder / "requirements.txt").read_text().split()
    # exactly what we pinned, plus the mlflow pin MLflow always adds
    assert sorted(r for r in requirements if not r.startswith("mlflow==")) == sorted(model_pip_requirements())


def test_run_holds_params_and_validation_metrics(published) -> None:  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    registry, result, versions = published
    run = MlflowClient(registry.tracking_uri).get_run(versions.model.run_id)
    assert run.data.metrics["val_mae"] == pytest.approx(result.metrics.mae)
    assert run.data.metrics["val_persistence_mae"] == pytest.approx(result.metrics.baseline_mae)
    assert run.data.params["feature_names"] == ",".join(result.feature_names)
    assert run.data.params["horizon_s"] == "1800.0"


def test_detectors_download_through_mlflows_own_models_uri(published) -> None:  # type: ignore[no-untyped-def]
    registry, result, versions = published
    # how a runtime in another process reads it: plain mlflow, tracking URI from the environment
    script = (
        "import json, sys, mlflow.artifacts\n"
        "from driftloop_servers.detectors import load_detector\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    folder = mlflow.artifacts.download_artifacts(f'models:/{name}@champion')\n"
        "    out[name] = [folder, load_detector(folder).kind]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri}
    done = subprocess.run(
        [sys.executable, "-c", script, OUTLIER_NAME, DRIFT_NAME],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found[OUTLIER_NAME][1] == result.outlier_detector.kind == "alibi-mahalanobis"
    assert found[DRIFT_NAME][1] == "scipy-ks"
    assert Path(found[OUTLIER_NAME][0], "detector.joblib").is_file()
    assert found[OUTLIER_NAME][0].startswith(versions.outlier.source.removeprefix("file://"))


def test_aliases_move_and_missing_ones_say_what_to_do(published) -> None:  # type: ignore[no-untyped-def]
    registry, result, versions = published
    challenger = registry.register_sklearn_model(
        MODEL_NAME,
        result.model,
        input_example=result.reference[:3],
        pip_requirements=["scikit-learn"],
        alias="challenger",
    )
    assert challenger.version == versions.model.version + 1
    assert registry.resolve(f"models:/{MODEL_NAME}@challenger").version == challenger.version
    assert registry.resolve(f"models:/{MODEL_NAME}/{versions.model.version}") == versions.model
    assert registry.get_alias(MODEL_NAME, "champion").version == versions.model.version
    with pytest.raises(
        RegistryError, match=r"no version of 'pump-bearing-temp' has alias 'staging'.*driftloop train"
    ):
        registry.get_alias(MODEL_NAME, "staging")
    with pytest.raises(RegistryError, match="has no version 99"):
        registry.resolve(f"models:/{MODEL_NAME}/99")


def test_models_uri_parsing() -> None:
    assert parse_models_uri("models:/m@champion") == ("m", "champion", None)
    assert parse_models_uri("models:/m/3") == ("m", None, 3)
    with pytest.raises(RegistryError, match="not a registry URI"):
        parse_models_uri("runs:/abc/model")


async def test_a_registered_classifier_is_served_with_labels_and_probabilities(tmp_path: Path) -> None:
    """The classification path end to end in one process: register an ``IncrementalClassifier`` as a
    version (explicit signature and requirements), serve it by alias with the model runtime, and keep
    learning from the registered copy."""
    from driftloop_servers.estimators import IncrementalClassifier
    from driftloop_servers.model_runtime import IncrementalModelRuntime

    from tests.servers.helpers import model_folder, output, request, tensor

    state = StateSettings(home=tmp_path / "home", mlflow_tracking_uri=None)
    registry = MlflowRegistry(state.tracking_uri(), state.artifact_root())
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 2))
    y = np.where(X[:, 0] > 0.3, "hot", np.where(X[:, 0] < -0.3, "cool", "normal"))
    model = IncrementalClassifier(random_state=0).fit(X, y)
    ref = registry.register_sklearn_model(
        "bearing-state",
        model,
        input_example=X[:5],
        pip_requirements=model_pip_requirements(),
        alias="champion",
    )
    settings = model_folder(
        tmp_path,
        "bearing-state",
        IncrementalModelRuntime,
        extra={
            "model_uri": "models:/bearing-state@champion",
            "tracking_uri": registry.tracking_uri,
            "feature_names": ["a", "b"],
        },
    )
    runtime = IncrementalModelRuntime(settings)
    assert await runtime.load()
    response = await runtime.predict(request(tensor("features", X[:4])))
    assert response.model_version == str(ref.version)
    assert output(response, "prediction").data.root == model.predict(X[:4]).tolist()
    assert output(response, "probabilities").shape == [4, 3]
    assert response.parameters is not None
    assert response.parameters.model_dump()["classes"] == ["cool", "hot", "normal"]
    loaded = registry.load_sklearn_model("models:/bearing-state@champion")
    loaded.partial_fit(X[:10], y[:10])  # classes known from the registered fit: none to declare again
    assert loaded.n_samples_seen_ == 310
