"""The live replay's outlier node: the generated deployment puts it before the model node (as the pump's
manifest does) and the result still validates against the SeldonDeployment CRD; the model node carries the
outlier node's outputs; the monitor reads them; the node's detector is fitted on the training part and
registered @champion in a real MLflow registry (sqlite under a temporary home)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from driftloop_feedback.monitor.settings import TRAINER_OUTLIER_BASE_RATE, MonitorSettings
from driftloop_graphs.spec import Deployment
from driftloop_graphs.validation import validate
from driftloop_servers.detectors import OutlierDetector, load_detector
from driftloop_servers.settings import ModelRuntimeSettings, OutlierRuntimeSettings

from driftloop.cli.replay_graph import (
    DRIFT_NAME,
    MODEL_NAME,
    NODE,
    OUTLIER_NAME,
    OUTLIER_NODE,
    deployment,
    fit_and_publish_detectors,
    worker_settings,
    write_serving,
)

FEATURES = ["load", "ambient", "label_lag1"]
TOPICS = {n: f"t.{n}" for n in ["request_log", "keyed_log", "feedback", "telemetry", "predictions",
                                "labelled", "drift", "rollouts"]}  # fmt: skip


def test_the_outlier_node_comes_before_the_model_node_in_both_predictors(tmp_path: Path) -> None:
    manifest, models = write_serving(tmp_path, "replay.requestlog.x", FEATURES)
    doc = yaml.safe_load(manifest.read_text())
    assert validate(doc) == []  # the CRD's schema, the operator webhook's rules, the v2 graph rules
    parsed = Deployment.from_doc(doc)
    parsed.require_local_support()
    for predictor in parsed.predictors:
        nodes = predictor.nodes()
        assert [(n.name, n.type) for n in nodes] == [(OUTLIER_NODE, "TRANSFORMER"), (NODE, "MODEL")]
        assert nodes[0].model_uri == f"models:/{OUTLIER_NAME}@champion"
        assert nodes[1].model_uri == f"models:/{MODEL_NAME}@champion"
    containers = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]
    assert [c["name"] for c in containers] == [OUTLIER_NODE, NODE]  # a container per custom node
    outlier = json.loads((models / OUTLIER_NODE / "model-settings.json").read_text())
    assert outlier["implementation"] == "driftloop_servers.outlier_runtime.OutlierRuntime"
    assert outlier["parameters"]["uri"] == f"models:/{OUTLIER_NAME}@champion"
    outlier_settings = OutlierRuntimeSettings.from_extra(outlier["parameters"]["extra"])
    assert outlier_settings.feature_names == FEATURES
    model = json.loads((models / NODE / "model-settings.json").read_text())
    model_settings = ModelRuntimeSettings.from_extra(model["parameters"]["extra"])
    # the model node copies the outlier node's two outputs into its response
    assert model_settings.carry_tensors == [outlier_settings.flag_output, outlier_settings.score_output]


def test_without_the_outlier_node_the_model_node_is_the_graph(tmp_path: Path) -> None:
    doc = deployment("replay.requestlog.x", outlier=False)
    assert validate(doc) == []
    for predictor in Deployment.from_doc(doc).predictors:
        assert [n.name for n in predictor.nodes()] == [NODE]
    _, models = write_serving(tmp_path, "replay.requestlog.x", FEATURES, outlier=False)
    assert sorted(p.name for p in models.iterdir()) == [NODE]


def test_the_monitor_reads_the_outlier_flags_on_the_model_nodes_requests() -> None:
    env = worker_settings(TOPICS, "x", loss_bound=None)
    monitor_env = {k.removeprefix("DRIFTLOOP_MONITOR_").lower(): v for k, v in env.items()
                   if k.startswith("DRIFTLOOP_MONITOR_")}  # fmt: skip
    assert monitor_env["model_node"] == NODE
    assert monitor_env["outlier_flag_tensor"] == OutlierRuntimeSettings(feature_names=["a"]).flag_output
    assert monitor_env["fallback_drift_model"] == DRIFT_NAME
    # the alarm's base rate is the rate the trainer's defaults imply, which the replay's detector uses
    assert "outlier_base_rate" not in monitor_env
    assert MonitorSettings().outlier_base_rate == TRAINER_OUTLIER_BASE_RATE


def test_the_detector_is_fitted_on_the_training_rows_and_registered_at_champion(tmp_path: Path) -> None:
    from driftloop.registry import MlflowRegistry
    from driftloop.settings import StateSettings

    registry = MlflowRegistry.from_state(StateSettings(home=tmp_path, mlflow_tracking_uri=None))
    rng = np.random.default_rng(0)
    cov = [[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]]
    rows = rng.multivariate_normal([10.0, 5.0, 0.0], cov, size=3000)
    fitted = fit_and_publish_detectors(registry, rows, FEATURES)
    assert len(fitted.reference) == 2000  # TrainingSettings.reference_rows of the training rows
    for name in (OUTLIER_NAME, DRIFT_NAME):
        assert registry.get_alias(name, "champion").version == 1, name
    folder = registry.download(f"models:/{OUTLIER_NAME}@champion", tmp_path / "outlier")
    detector = load_detector(folder)
    assert isinstance(detector, OutlierDetector) and detector.n_features == 3
    fresh = rng.multivariate_normal([10.0, 5.0, 0.0], cov, size=4000)
    rate = float(np.mean([detector.score(fresh[i : i + 10]).flags for i in range(0, 4000, 10)]))
    assert 0.01 < rate < 0.05, rate  # about the monitor's base rate, 0.025
    broken = fresh[:10].copy()
    broken[:, 1] = broken[:, 0] - 5.0 - 4.0  # breaks the correlation between the first two columns
    assert detector.score(broken).flags.all()
