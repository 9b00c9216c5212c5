"""Offline replays end to end (the ``driftloop replay --offline`` command on small files): a regression
and a classification, the report's fields, the delay semantics, and a slice of ELEC2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from driftloop.cli import cli
from driftloop.replay.delay import LabelDelay
from driftloop.replay.prequential import ReplayPlan, evaluate
from driftloop.replay.table import ColumnOptions, prepare

ELEC2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "elec2" / "elecNormNew.csv"
ELEC2_NAMES = "date,day,period,nswprice,nswdemand,vicprice,vicdemand,transfer,class"


def drifting_plant(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two pumps; the bearing temperature's dependence on load changes half way (a regime change)."""
    rng = np.random.default_rng(seed)
    load = rng.uniform(0.2, 1.0, n)
    ambient = rng.normal(20.0, 2.0, n)
    gain = np.where(np.arange(n) < n // 2, 20.0, 35.0)
    temp = 30.0 + gain * load + 0.5 * ambient + rng.normal(0.0, 0.3, n)
    return pd.DataFrame(
        {
            "time": pd.date_range("2026-03-01", periods=n, freq="30s").strftime("%Y-%m-%d %H:%M:%S"),
            "pump": np.tile(["p1", "p2"], n // 2),
            "load": load,
            "ambient": ambient,
            "bearing_temp": temp,
            "state": np.where(temp > 30.0 + gain * 0.6 + 10.0, "hot", "ok"),
        }
    )


def run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["replay", *args])
    return result.exit_code, result.output


def test_regression_replay_end_to_end_writes_the_report(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    frame = drifting_plant().drop(columns="state")
    frame.to_csv(data, sep=";", decimal=",", index=False)  # a European export
    report_path = tmp_path / "out" / "report.json"
    code, output = run(
        [str(data), "--target", "bearing_temp", "--time", "time", "--asset", "pump", "--label-delay", "2min",
         "--model", "sgd", "--train-fraction", "0.25", "--report", str(report_path), "--offline"]
    )  # fmt: skip
    assert code == 0, output
    assert "regression (inferred" in output and "loop" in output and "frozen" in output
    report = json.loads(report_path.read_text())
    assert report["task"] == "regression" and report["mode"] == "offline"
    assert report["rows"] == 300 and report["training_rows"] == 100
    for source in ("loop", "frozen", "baseline"):
        assert set(report[source]) == {"mae", "rmse"}
    assert report["inputs"]["features"] == ["load", "ambient"]
    assert report["label_delay"] == {"rows": None, "seconds": 120.0}
    for count in ("drift_events", "candidates", "promotions", "rollbacks"):
        assert report[count] is None
    assert "no drift monitor" in report["notes"][0]
    assert sum(w["rows"] for w in report["windows"]) == 300
    assert set(report["windows"][0]) >= {"start_row", "end_row", "start_time", "loop", "frozen", "baseline"}
    # the regime change half way: the learning model ends well ahead of the frozen one
    assert report["windows"][-1]["loop"]["mae"] < 0.5 * report["windows"][-1]["frozen"]["mae"]


def test_classification_replay_end_to_end_with_label_inputs(tmp_path: Path) -> None:
    data = tmp_path / "plant.parquet"
    drifting_plant().drop(columns="bearing_temp").to_parquet(data)
    report_path = tmp_path / "report.json"
    code, output = run(
        [str(data), "--target", "state", "--time", "time", "--label-delay", "3", "--label-lags", "1",
         "--model", "window-gbt", "--report", str(report_path), "--offline"]
    )  # fmt: skip
    assert code == 0, output
    report = json.loads(report_path.read_text())
    assert report["task"] == "classification" and report["classes"] == ["hot", "ok"]
    assert "labels that are not numbers" in report["task_reason"]
    for source in ("loop", "frozen", "baseline"):
        assert set(report[source]) == {"accuracy", "log_loss"}
        assert 0.0 <= report[source]["accuracy"] <= 1.0 and report[source]["log_loss"] > 0.0
    assert report["inputs"]["columns"] == ["label_lag1==ok"]
    assert report["inputs"]["from_ground_truth"] == ["the last 1 known label(s) of the row's asset"]
    assert report["scored"] == {"loop": 320, "frozen": 320, "baseline": 320}


def test_bad_data_is_a_clear_error_before_anything_runs(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    drifting_plant().to_csv(data, index=False)
    code, output = run([str(data), "--target", "bearing_tmp", "--offline"])
    assert code == 1
    assert "did you mean 'bearing_temp'" in output and "Traceback" not in output
    code, output = run([str(data), "--target", "state", "--model", "forest", "--offline"])
    assert (
        code == 1 and "--model 'forest' is not a classification model: pick one of sgd, window-gbt" in output
    )


def test_no_row_is_predicted_with_its_own_label_known() -> None:
    """With a delay of 3 rows the baseline of row i is exactly y[i-3], and a model that could see a
    label before predicting its row would score perfectly on this label-only stream."""
    rng = np.random.default_rng(3)
    y = rng.normal(size=200).cumsum()
    frame = pd.DataFrame({"noise": rng.normal(size=200), "y": y})
    table = prepare(frame, ColumnOptions(target="y"))
    plan = ReplayPlan(delay=LabelDelay.parse("3"), model="sgd", train_fraction=0.25, label_lags=1)
    evaluation = evaluate(table, plan)
    np.testing.assert_array_equal(evaluation.predictions["baseline"], y[47:197])
    mae = evaluation.metrics()["loop"]["mae"]
    assert mae is not None and mae > 0.3  # it cannot know y[i] from y[i-3]
    assert evaluation.trained_on == 48 and evaluation.learned == 149  # the last 3 labels never arrive


def test_elec2_slice_learning_with_the_last_label_beats_the_last_class_baseline(tmp_path: Path) -> None:
    data = tmp_path / "elec2-slice.csv"
    data.write_text("".join(ELEC2.read_text().splitlines(keepends=True)[:2000]))
    report_path = tmp_path / "report.json"
    code, output = run(
        [str(data), "--names", ELEC2_NAMES, "--target", "class", "--label-lags", "1",
         "--train-fraction", "0.1", "--report", str(report_path), "--offline"]
    )  # fmt: skip
    assert code == 0, output
    report = json.loads(report_path.read_text())
    assert report["inputs"]["features"] == ELEC2_NAMES.split(",")[:-1]
    assert report["loop"]["accuracy"] > report["baseline"]["accuracy"] > 0.8
