"""The live replay's generated SeldonDeployment and model repository (read by the local runtime's own
parser), and a live replay refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from driftloop_graphs.spec import Deployment

from driftloop.cli import cli
from driftloop.cli.replay_graph import (
    MODEL_NAME,
    NODE,
    OUTLIER_NODE,
    check_monitor_settings,
    worker_settings,
    write_serving,
)
from tests.replay.test_offline import drifting_plant


def test_the_generated_deployment_is_a_canary_at_rest_on_the_data_features(tmp_path: Path) -> None:
    manifest, models = write_serving(tmp_path, "replay.requestlog.x", ["load", "ambient", "label_lag1"])
    deployment = Deployment.from_doc(yaml.safe_load(manifest.read_text()))
    deployment.require_local_support()
    assert {p.name: p.traffic for p in deployment.predictors} == {"main": 100, "canary": 0}
    for predictor in deployment.predictors:
        assert predictor.log_topic == "replay.requestlog.x"
        assert [n.name for n in predictor.nodes()] == [OUTLIER_NODE, NODE]
        assert predictor.nodes()[1].model_uri == f"models:/{MODEL_NAME}@champion"
    settings = json.loads((models / NODE / "model-settings.json").read_text())
    assert settings["parameters"]["extra"]["feature_names"] == ["load", "ambient", "label_lag1"]


def test_worker_settings_point_every_worker_at_the_replay_model() -> None:
    topics = {n: f"t.{n}" for n in ["request_log", "keyed_log", "feedback", "telemetry", "predictions",
                                      "labelled", "drift", "rollouts"]}  # fmt: skip
    env = worker_settings(topics, "x", loss_bound=None)
    for worker in ("TRAINER", "VALIDATOR", "MONITOR", "ROLLOUT"):
        assert env[f"DRIFTLOOP_{worker}_MODEL_NAME"] == MODEL_NAME
    assert "DRIFTLOOP_VALIDATION_LOSS_BOUND" not in env  # a classifier's zero-one loss needs none
    assert worker_settings(topics, "x", loss_bound=12.5)["DRIFTLOOP_VALIDATION_LOSS_BOUND"] == "12.5"


def test_a_live_replay_that_cannot_train_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    data = tmp_path / "plant.csv"
    drifting_plant(40).drop(columns="state").to_csv(data, index=False)
    result = CliRunner().invoke(
        cli, ["replay", str(data), "--target", "bearing_temp", "--train-fraction", "0.999"]
    )
    assert result.exit_code == 1 and "--train-fraction 0.999 leaves" in result.output, result.output
    assert not (tmp_path / "home" / "replay").exists()  # no registry, no loop


def test_the_replays_monitor_treats_rows_as_a_time_series_and_takes_the_users_tunables() -> None:
    topics = {n: f"t.{n}" for n in ["request_log", "keyed_log", "feedback", "telemetry", "predictions",
                                      "labelled", "drift", "rollouts"]}  # fmt: skip
    own = worker_settings(topics, "x", None, environ={})
    assert own["DRIFTLOOP_MONITOR_SERIAL"] == "ar1" and own["DRIFTLOOP_MONITOR_REFERENCE"] == "recent"
    assert own["DRIFTLOOP_MONITOR_WINDOW_ROWS"] == "500"  # not the demo's 200
    environ = {
        "DRIFTLOOP_MONITOR_REFERENCE": "recent",
        "DRIFTLOOP_MONITOR_WINDOW_ROWS": "500",
        "DRIFTLOOP_MONITOR_SERIAL": "independent",
        "DRIFTLOOP_MONITOR_DRIFT_TOPIC": "elsewhere",  # not a tunable: the replay's own topic stays
    }
    env = worker_settings(topics, "x", None, environ=environ)
    assert env["DRIFTLOOP_MONITOR_REFERENCE"] == "recent" and env["DRIFTLOOP_MONITOR_WINDOW_ROWS"] == "500"
    assert env["DRIFTLOOP_MONITOR_SERIAL"] == "independent"
    assert env["DRIFTLOOP_MONITOR_DRIFT_TOPIC"] == "t.drift"
    check_monitor_settings(env)  # a consistent set passes


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DRIFTLOOP_MONITOR_REFERENCE": "bogus"}, "DRIFTLOOP_MONITOR_REFERENCE='bogus': Input should be"),
        ({"DRIFTLOOP_MONITOR_WINDOW_ROWS": "many"}, "DRIFTLOOP_MONITOR_WINDOW_ROWS='many'"),
        ({"DRIFTLOOP_MONITOR_TEST": "cvm"}, "serial=ar1 re-takes KS p-values only"),
        ({"DRIFTLOOP_MONITOR_EXCLUDE_FEATURES": "a,b"}, "is not a JSON list"),
    ],
)
def test_a_bad_monitor_setting_stops_the_replay_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    data = tmp_path / "plant.csv"
    drifting_plant(40).drop(columns="state").to_csv(data, index=False)
    result = CliRunner().invoke(cli, ["replay", str(data), "--target", "bearing_temp"])
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "home" / "replay").exists()  # no registry, no loop
