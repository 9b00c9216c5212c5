"""A small live replay (real processes: the loop, the local runtime's MLServer, every worker, on the
embedded event log) whose scored part holds a stretch of broken readings: the outlier node flags rows, the
request log carries ``outlier_flag`` on the model node's requests, the drift monitor counts the flagged rows
in its windows and raises the outlier-rate alarm on ``driftloop.alarms``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from driftloop_feedback.monitor.alarms import OUTLIER_RATE, Alarm
from driftloop_feedback.monitor.settings import ALARM_TOPIC
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.report.collect import read_to_end

from driftloop.cli.demo_loop import topic_names
from driftloop.cli.loop_session import open_event_log_at
from driftloop.cli.replay_graph import NODE
from driftloop.seldon_log import TYPE_REQUEST, parse_event
from tests.replay.test_live import live_replay
from tests.replay.test_offline import drifting_plant

pytestmark = pytest.mark.integration

ROWS, TRAIN = 1000, 250
BROKEN = range(600, 660)  # data rows whose ambient reading is broken (a stuck sensor far off its range)
BROKEN_READING = 80.0  # 30 sigma off the training part's readings


def _request_tensor(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    for section in ("inputs", "outputs"):  # a chained node's request is logged before the renaming
        for tensor in body.get(section) or ():
            if tensor.get("name") == name:
                return dict(tensor)
    return None


def test_a_live_replay_flags_outliers_and_the_monitor_counts_and_alarms_on_them(tmp_path: Path) -> None:
    data = tmp_path / "plant.csv"
    frame = drifting_plant(ROWS).drop(columns="state")
    frame.loc[list(BROKEN), "ambient"] = BROKEN_READING
    frame.to_csv(data, index=False)
    report, _ = live_replay(
        tmp_path, data, ["--target", "bearing_temp", "--time", "time", "--train-fraction", str(TRAIN / ROWS),
                         "--settle-s", "5"],
    )  # fmt: skip
    live = report["live"]
    assert live["failed_calls"] == 0
    run_home = Path(live["run_home"])
    manifest = yaml.safe_load((run_home / "replay-canary.yaml").read_text())
    env = manifest["spec"]["predictors"][0]["svcOrchSpec"]["env"]
    request_log = next(e["value"] for e in env if e["name"] == "LOGGER_KAFKA_TOPIC")
    topics = topic_names(request_log.rsplit(".", 1)[1])
    assert topics["request_log"] == request_log

    log = open_event_log_at(run_home)
    try:
        requests = [parse_event(r.headers, r.value) for r in read_to_end(log, request_log)]
        verdicts = [DriftVerdict.from_json(r.value) for r in read_to_end(log, topics["drift"])]
        alarms = [Alarm.from_json(r.value) for r in read_to_end(log, ALARM_TOPIC)]
    finally:
        log.close()

    # every model-node request carries a flag per row (the request log's partitions interleave calls:
    # rows are told apart by their readings); the broken rows are flagged, few others are
    names = json.loads((run_home / "models" / NODE / "model-settings.json").read_text())
    ambient = names["parameters"]["extra"]["feature_names"].index("ambient")
    flags: list[bool] = []
    broken: list[bool] = []
    for event in requests:
        if event.model_id != NODE or event.type != TYPE_REQUEST:
            continue
        body = orjson.loads(event.payload)
        tensor = _request_tensor(body, "outlier_flag")
        assert tensor is not None, f"a model request without outlier_flag: {sorted(body)}"
        features = _request_tensor(body, "features")
        assert features is not None and len(tensor["data"]) == features["shape"][0]
        x = np.asarray(features["data"], dtype=float).reshape(features["shape"])
        flags.extend(bool(v) for v in tensor["data"])
        broken.extend((x[:, ambient] == BROKEN_READING).tolist())
    assert len(flags) == ROWS - TRAIN and sum(broken) == len(BROKEN)
    flagged, stuck = np.asarray(flags), np.asarray(broken)
    assert flagged[stuck].all()
    assert flagged[~stuck].mean() < 0.06, flagged[~stuck].mean()  # about the 2.5 % base rate elsewhere

    # the monitor counted those flags in its windows (the last one may close after the loop stopped): every
    # row of every window carried one; the windows over the broken rows counted each of them
    closed = sum(v.rows for v in verdicts)
    assert closed >= BROKEN.stop - TRAIN, [v.rows for v in verdicts]
    assert sum(v.flagged_rows or 0 for v in verdicts) == closed
    assert len(BROKEN) <= sum(v.outliers or 0 for v in verdicts) <= int(flagged.sum())
    assert any(v.outlier_alarm for v in verdicts)
    # ... and raised the outlier-rate alarm on the alarm topic, in the window holding the broken rows
    assert alarms and all(a.kind == OUTLIER_RATE for a in alarms)
    raised = {v.window_id: v for v in verdicts if v.outlier_alarm}
    assert {a.window_id for a in alarms} == set(raised)
    assert all(a.count >= a.critical_count for a in alarms)
