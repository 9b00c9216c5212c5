"""The simulate/train/serve/demo commands: help, files written, errors that name the problem."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from driftloop.cli import cli


@pytest.mark.parametrize("command", ["simulate", "train", "serve", "demo"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 8


def test_simulate_writes_telemetry_with_ground_truth_and_events(tmp_path: Path) -> None:
    out, events = tmp_path / "fleet.csv", tmp_path / "events.csv"
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--assets",
            "2",
            "--days",
            "2",
            "--seed",
            "4",
            "--out",
            str(out),
            "--events-out",
            str(events),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1152 rows" in result.output
    table = pd.read_csv(out)
    assert list(table.columns)[-1] == "bearing_temp_c_in_1800s"
    pump = table[table["asset_id"] == "pump-01"].set_index("event_time")
    t = pump.index[10]
    assert pump.loc[t, "bearing_temp_c_in_1800s"] == pytest.approx(
        pump.loc[t + 1800, "bearing_temp_c"], nan_ok=True
    )
    assert set(pd.read_csv(events)["kind"]) <= {
        "wear_onset",
        "process_retune",
        "seal_replacement",
        "spike",
        "stuck",
        "dropout",
    }


def test_train_on_the_simulators_csv_without_registering(tmp_path: Path, driftloop_home: Path) -> None:
    out = tmp_path / "fleet.parquet"
    assert (
        CliRunner().invoke(cli, ["simulate", "--assets", "2", "--days", "5", "--out", str(out)]).exit_code
        == 0
    )
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--csv",
            str(out),
            "--no-register",
            "--outlier-kind",
            "sklearn-iforest",
            "--drift-kind",
            "scipy-ks",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "vs persistence MAE" in result.output
    # the ground-truth column is not a feature: the repository's feature list matches, no warning
    assert '"bearing_temp_c_lag_900s"' in result.output and "warning" not in result.output
    assert not (driftloop_home / "mlflow.db").exists()


def test_train_names_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    pd.DataFrame({"time": [0, 300], "temp": [1.0, 2.0]}).to_csv(path, index=False)
    result = CliRunner().invoke(cli, ["train", "--csv", str(path), "--no-register"])
    assert result.exit_code == 1
    assert "no column(s) ['event_time', 'bearing_temp_c', 'asset_id']" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--csv",
            str(path),
            "--time-col",
            "time",
            "--asset-col",
            "",
            "--target-col",
            "temp",
            "--no-register",
        ],
    )
    assert result.exit_code == 1
    assert "only 0 labelled rows" in result.output and "need at least 200" in result.output
    assert "Traceback" not in result.output


@pytest.mark.integration
def test_serve_before_training_says_to_train_first(driftloop_home: Path) -> None:
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "has alias 'champion'" in result.output and "driftloop train" in result.output
    assert not list((driftloop_home / "run").glob("mlserver-*"))  # MLServer was never started


def test_mlflow_telemetry_is_off_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    from driftloop.cli import quiet_mlflow_telemetry

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    quiet_mlflow_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    quiet_mlflow_telemetry()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"
