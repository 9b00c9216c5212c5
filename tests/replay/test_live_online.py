"""``driftloop replay --online``: the served model also learns each revealed label in place (the
ingress's learn route, every predictor's model node) before the next request. Real processes: the
loop, the local runtime's ingress and MLServers, every worker, on the embedded event log."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from driftloop.cli import cli
from tests.replay.test_live import live_replay
from tests.replay.test_offline import drifting_plant


@pytest.mark.integration
def test_online_replay_serves_a_model_that_learned_every_revealed_label(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    drifting_plant(1200).drop(columns="state").to_csv(data, index=False)
    report, _ = live_replay(
        tmp_path, data, ["--target", "bearing_temp", "--time", "time", "--asset", "pump", "--train-fraction",
                         "0.25", "--settle-s", "20", "--online", "--rows-per-call", "1"],
    )  # fmt: skip
    live = report["live"]
    assert live["online"] is True and live["online_learn_failed_calls"] == 0 and live["failed_calls"] == 0
    # each revealed label (all but the last row's) was learned by the served model before the next row
    assert live["online_learned_rows"] == live["truth_rows_posted"] == 899
    assert any("online" in note for note in report["notes"])
    # the plant's gain changes half way: the frozen copy keeps the old one, the served model follows
    assert report["loop"]["mae"] < 0.75 * report["frozen"]["mae"], report["loop"]


def test_online_is_refused_for_an_offline_replay(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    drifting_plant(100).drop(columns="state").to_csv(data, index=False)
    result = CliRunner().invoke(
        cli, ["replay", str(data), "--target", "bearing_temp", "--offline", "--online"]
    )
    assert result.exit_code == 1 and "--online is a live-replay option" in result.output, result.output
