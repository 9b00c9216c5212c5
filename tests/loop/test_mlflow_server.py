"""The loop's registry steps against a real ``mlflow server`` over HTTP, backed by a real PostgreSQL.

register (publish: forecaster + detectors, champion) -> a real MLServer process loads ``models:/...@champion``
from the server -> a trainer increment registered as a run and a ``challenger`` version with its drift
reference -> the validator's verdict on the version's tags -> the rollout controller's registry moves
``champion``. Everything is read back through an ``MlflowClient`` bound to the http URI, and nothing may
land in a local sqlite file or the local artifact folder: the client shares no filesystem with the server.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from driftloop_feedback.learn.candidates import CANDIDATE_ID_TAG, Candidate, CandidateRegistrar
from driftloop_feedback.monitor.registry_source import RegistryReferenceSource
from driftloop_feedback.validate import ValidationSettings
from driftloop_feedback.validate.validator import Row, Validator, publish_verdict
from mlflow import MlflowClient

from driftloop.learning.features import FeatureSpec, build_features
from driftloop.learning.registration import publish
from driftloop.learning.training import TrainingSettings, split_by_time, train
from driftloop.learning.v2_payload import features_request, output_values
from driftloop.mlserver_env import server_env
from driftloop.mlserver_process import MLServerProcess
from driftloop.registry import MlflowRegistry
from driftloop.settings import StateSettings
from driftloop.telemetry import SimulatorSettings, simulate_fleet
from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.mlserver import MODEL_REPOSITORY

pytestmark = pytest.mark.integration

MODEL = "pump-bearing-temp"


def _local_stores(root: Path, shallow: bool = False) -> list[Path]:
    """Files a local MLflow store would leave: sqlite databases and anything in an artifact folder
    (``shallow``: only MLflow's defaults directly in ``root``, as a client with no URI would create them)."""
    if shallow:
        return [p for p in (root / "mlflow.db", root / "mlruns", root / "mlartifacts") if p.exists()]
    found = [p for p in root.rglob("*") if p.is_file() and p.suffix in {".db", ".sqlite"}]
    found += [p for p in root.rglob("mlartifacts/**/*") if p.is_file()]
    found += [p for p in root.rglob("mlruns/**/*") if p.is_file()]
    return found


def test_the_loop_runs_against_an_mlflow_server_on_postgresql(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    before = _local_stores(Path.cwd(), shallow=True)
    home = tmp_path / "home"
    state = StateSettings(home=home, mlflow_tracking_uri=mlflow_server.tracking_uri)
    registry = MlflowRegistry.from_state(state)
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri, registry_uri=mlflow_server.tracking_uri)

    # 1. register: the forecaster and both detectors, alias champion
    telemetry = simulate_fleet(SimulatorSettings(assets=2, days=4.0, seed=3)).telemetry
    result = train(telemetry, FeatureSpec(), TrainingSettings(seed=3, reference_rows=300))
    published = publish(result, registry)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert int(champion.version) == published.model.version
    assert str(champion.source).startswith("mlflow-artifacts:/"), champion.source  # served by the server
    experiment = client.get_experiment_by_name("driftloop")
    assert experiment is not None and experiment.artifact_location.startswith("mlflow-artifacts:/")
    assert any(mlflow_server.artifacts_destination.rglob("MLmodel")), "the model is not in the server's store"

    # 2. a real MLServer process loads models:/...@champion (and the detectors) from the server
    _, validation = split_by_time(build_features(telemetry, FeatureSpec()), 0.25)
    X = validation.X[:8]
    champion_model = registry.load_sklearn_model(f"models:/{MODEL}@champion")
    env = server_env(state)
    assert env["MLFLOW_TRACKING_URI"] == mlflow_server.tracking_uri
    with (
        MLServerProcess(MODEL_REPOSITORY, env=env, run_dir=tmp_path / "mlserver") as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        response = http.post("/v2/models/bearing-temp/infer", json=features_request(X, request_id="r-1"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == champion.version
        np.testing.assert_allclose(output_values(body)["prediction"], champion_model.predict(X), rtol=1e-9)
        for detector in ("bearing-outlier", "bearing-drift"):
            assert http.get(f"/v2/models/{detector}/ready").status_code == 200, server.log_tail()

    # 3. the trainer's increment: a run with params/metrics/tags and a challenger version with its reference
    challenger_model = pickle.loads(pickle.dumps(result.model))
    challenger_model.partial_fit(validation.X[8:200], validation.y[8:200])
    candidate = Candidate(
        candidate_id="cand-server-1",
        trigger="schedule",
        parent_version=int(champion.version),
        cut_at=1.7e9,
        model_pickle=pickle.dumps(challenger_model),
        params={"window_rows": 192},
        metrics={"challenger_mae": 0.5},
        reference=validation.X[8:200],
        feature_names=validation.feature_names,
    )
    ref = CandidateRegistrar(registry, MODEL, "challenger").register(candidate)
    assert ref.run_id is not None
    run = client.get_run(ref.run_id)
    assert run.data.params["window_rows"] == "192"
    assert run.data.metrics["challenger_mae"] == 0.5
    assert run.data.tags[CANDIDATE_ID_TAG] == "cand-server-1"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert int(client.get_model_version_by_alias(MODEL, "challenger").version) == ref.version
    assert [a.path for a in client.list_artifacts(ref.run_id, "drift-reference")] == [
        "drift-reference/reference.json",
        "drift-reference/reference.npy",
    ]
    # the drift monitor reads that reference (and its fallback, the registered drift detector) back
    monitor_source = RegistryReferenceSource(registry, MODEL, f"{MODEL}-drift")
    reference = monitor_source.reference(str(ref.version))
    np.testing.assert_array_equal(reference.data, validation.X[8:200])
    assert tuple(reference.feature_names) == tuple(validation.feature_names)
    detector, names, detector_uri = monitor_source.fallback(str(ref.version))
    assert detector_uri == f"models:/{MODEL}-drift/{published.drift.version}"
    assert names == tuple(result.feature_names)
    # registering the same candidate again (a restart) finds it instead of adding a version
    assert CandidateRegistrar(registry, MODEL, "challenger").register(candidate).version == ref.version

    # 4. the validator's verdict, on the challenger's version tags and run metrics
    rows = [Row(x, y) for x, y in zip(validation.X[200:], validation.y[200:], strict=True)]
    verdict = Validator(
        registry.load_sklearn_model(f"models:/{MODEL}@champion"),
        registry.load_sklearn_model(f"models:/{MODEL}@challenger"),
        ValidationSettings(loss_bound=50.0),
    ).run(rows)
    publish_verdict(registry, MODEL, ref.version, ref.run_id, verdict)
    tags = client.get_model_version(MODEL, str(ref.version)).tags
    assert tags["driftloop.validation.verdict"] == verdict.decision.verdict
    assert tags["driftloop.validation.n"] == str(verdict.decision.n)
    assert [m.step for m in client.get_metric_history(ref.run_id, "driftloop.validation.n")] == [
        verdict.decision.n
    ]

    # 5. the rollout controller's registry port promotes: champion moves to the challenger's version
    registry.set_alias(MODEL, "champion", ref.version)
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == ref.version
    assert registry.get_alias(MODEL, "champion").version == ref.version

    # a fresh client (another pod) sees the same state; nothing went to a local store
    other = MlflowRegistry.from_state(
        StateSettings(home=tmp_path / "elsewhere", mlflow_tracking_uri=state.mlflow_tracking_uri)
    )
    assert other.get_alias(MODEL, "challenger").version == ref.version
    assert _local_stores(tmp_path) == []
    assert not (home / "mlflow.db").exists()
    assert _local_stores(Path.cwd(), shallow=True) == before
    # and the server kept it all in PostgreSQL
    with psycopg.connect(mlflow_server.backend_store_uri) as db:
        versions = db.execute("select name, version from model_versions").fetchall()
        runs = db.execute("select count(*) from runs").fetchone()
    assert (MODEL, ref.version) in versions and len(versions) == 4
    assert runs is not None and runs[0] == 4
