"""Live replays end to end (``driftloop replay DATA`` without ``--offline``; real processes: the loop,
the local runtime's MLServer, every worker, on the embedded event log): a regression and a
classification on small synthetic files. The report has the offline report's fields, the loop's counts
read from its topics and registry, every posted truth joined, and the HTML report embeds the plots.

While only the initial version v1 served, the loop's predictions are what the frozen copy of v1 gives
locally: the served V2 answer (a regressor's prediction; a classifier's ``probabilities`` with
``parameters.classes``) is checked against the model itself, metric for metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.replay.test_offline import drifting_plant

pytestmark = pytest.mark.integration

FIELDS = {
    "task",
    "rows",
    "loop",
    "frozen",
    "baseline",
    "drift_events",
    "candidates",
    "promotions",
    "rollbacks",
}


def live_replay(tmp_path: Path, data: Path, args: list[str]) -> tuple[dict[str, Any], Path]:
    home = tmp_path / "home"
    report_path = tmp_path / "out" / "report.json"
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "COLUMNS": "120"}
    for name in ("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "DRIFTLOOP_MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driftloop", "replay", str(data), *args, "--report", str(report_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(f"driftloop replay (live): {time.monotonic() - started:.0f} s\n{done.stdout[-2500:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    # everything the replay started is stopped: no PID of the loop's status alive
    status = json.loads((home / "replay" / "run" / "loop" / "loop.json").read_text())
    for pid in [status["pid"], *(w["pid"] for w in status["workers"] if w["pid"])]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    return json.loads(report_path.read_text()), report_path


def check_report(report: dict[str, Any], report_path: Path, metrics: tuple[str, str], rows: int) -> None:
    assert set(report) >= FIELDS and report["mode"] == "live"
    assert report["rows"] == rows and report["training_rows"] == 2 * rows // 6
    for source in ("loop", "frozen", "baseline"):
        assert set(report[source]) == set(metrics) and report["scored"][source] > 0
    for count in ("drift_events", "candidates", "promotions", "rollbacks"):
        assert isinstance(report[count], int) and report[count] >= 0, count
    live = report["live"]
    assert live["failed_calls"] == 0 and live["calls"] == -(-rows // live["rows_per_call"])
    assert sum(live["served_versions"].values()) == rows
    # every truth posted through the feedback API came out of the joiner as a labelled example; truth
    # goes by request, so the last request's (its last row's label is never revealed) is never posted
    assert live["truth_rows_posted"] == live["labelled_examples"] == rows - live["rows_per_call"]
    assert report["windows"] and sum(w["rows"] for w in report["windows"]) == rows
    assert report["rows_per_second"] > 0
    html = report_path.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http://" not in html and "https://" not in html


def test_live_regression_replay_runs_the_loop_and_writes_both_reports(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    drifting_plant(2400).drop(columns="state").to_csv(data, sep=";", decimal=",", index=False)
    report, path = live_replay(
        tmp_path, data, ["--target", "bearing_temp", "--time", "time", "--asset", "pump",
                         "--train-fraction", "0.25", "--settle-s", "20"],
    )  # fmt: skip
    check_report(report, path, ("mae", "rmse"), 1800)
    assert report["task"] == "regression"
    assert report["loop"]["mae"] < report["baseline"]["mae"]
    if set(report["live"]["served_versions"]) == {"1"}:  # v1 served every row: the frozen copy's answers
        assert report["loop"]["mae"] == pytest.approx(report["frozen"]["mae"], rel=1e-9)
        assert report["loop"]["rmse"] == pytest.approx(report["frozen"]["rmse"], rel=1e-9)


def test_live_classification_replay_serves_class_probabilities(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    drifting_plant(1800).drop(columns="bearing_temp").to_csv(data, index=False)
    report, path = live_replay(
        tmp_path, data, ["--target", "state", "--time", "time", "--asset", "pump", "--train-fraction", "0.25",
                         "--settle-s", "20"],
    )  # fmt: skip
    check_report(report, path, ("accuracy", "log_loss"), 1350)
    assert report["task"] == "classification" and report["classes"] == ["hot", "ok"]
    assert report["loop"]["accuracy"] > report["baseline"]["accuracy"]
    if set(report["live"]["served_versions"]) == {"1"}:
        # the served probabilities, mapped through parameters.classes, are v1's own
        assert report["loop"]["accuracy"] == pytest.approx(report["frozen"]["accuracy"], abs=1e-12)
        assert report["loop"]["log_loss"] == pytest.approx(report["frozen"]["log_loss"], rel=1e-9)
