"""A real MLflow store (sqlite + local artifact folder in a temp dir) holding a registered forecaster and
detectors, built once per session for the runtime tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector, save_detector
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.servers.helpers import reference_data

MODEL_NAME = "pump-bearing-temp"
OUTLIER_NAME = "pump-bearing-temp-outlier"
DRIFT_NAME = "pump-bearing-temp-drift"


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    models: dict[str, Pipeline]  # registered version -> the estimator logged as that version


def forecaster(seed: int, scale: float = 1.0) -> Pipeline:
    x = reference_data(300, seed=seed)
    y = scale * (0.4 * x[:, 0] + 0.01 * x[:, 1] + 0.8 * x[:, 2])
    return make_pipeline(StandardScaler(), SGDRegressor(random_state=seed)).fit(x, y)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    # mlflow.set_*_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI: restored below, or every
    # subprocess a later test starts would inherit this session's (or the default) registry
    previous_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        client = MlflowClient()
        exp = client.create_experiment("servers-tests", artifact_location=(root / "artifacts").as_uri())
        models: dict[str, Pipeline] = {}
        x = reference_data(50, seed=9)
        for seed, scale in ((1, 1.0), (2, 2.0)):
            model = forecaster(seed, scale)
            with mlflow.start_run(experiment_id=exp):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(x, model.predict(x)),
                    pip_requirements=["scikit-learn"],
                    serialization_format="pickle",
                    registered_model_name=MODEL_NAME,
                )
            models[str(info.registered_model_version)] = model
        client.set_registered_model_alias(MODEL_NAME, "champion", "1")
        client.set_registered_model_alias(MODEL_NAME, "challenger", "2")

        x_ref = reference_data(400, seed=1)
        for name, detector in (
            (OUTLIER_NAME, fit_outlier_detector("sklearn-iforest", x_ref)),
            (DRIFT_NAME, fit_drift_detector("scipy-ks", x_ref)),
        ):
            folder = root / "staging" / name
            save_detector(detector, folder)
            with mlflow.start_run(experiment_id=exp) as run:
                mlflow.log_artifacts(str(folder), artifact_path="detector")
            client.create_registered_model(name)
            version = client.create_model_version(name, f"{run.info.artifact_uri}/detector", run.info.run_id)
            client.set_registered_model_alias(name, "champion", version.version)
    finally:
        # the runtimes must find the registry through their own settings, never through MLflow's
        # process-wide URIs (an MLServer process has none set)
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        for name, value in previous_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield Registry(tracking_uri=tracking_uri, models=models)


@pytest.fixture()
def rows() -> np.ndarray:
    return reference_data(4, seed=7)
