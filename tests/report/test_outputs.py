"""The report's JSON fields, the PNG figures, the self-contained HTML file and the terminal summary, on a
synthetic run: a regime change, drift events, one candidate promoted and one rolled back."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.monitor.verdict import DriftVerdict
from driftloop_feedback.report import (
    CandidateVersion,
    FeatureColumn,
    LoopRecords,
    WindowSpec,
    build_report,
    print_summary,
    score,
    write_outputs,
)
from driftloop_feedback.rollout.events import RolloutEvent
from rich.console import Console

from tests.report.streams import Doubler, example, logged

T0 = 1_700_000_000.0
CHANGE_ROW = 120


def run_records() -> LoopRecords:
    """240 rows, one a second; at row 120 the truth shifts by +3: v1 (2 x feature) keeps erring until the
    loop's v2 (promoted at row 170) serves; v3 is rolled back."""
    rng = np.random.default_rng(7)
    examples = []
    for i in range(240):
        x = float(rng.uniform(1, 2))
        truth = 2 * x + (3.0 if i >= CHANGE_ROW else 0.0) + float(rng.normal(0, 0.1))
        version, endpoint = ("2", "main") if i >= 170 else ("1", "main")
        if 150 <= i < 170 and i % 5 == 0:
            version, endpoint = "2", "canary"
        prediction = 2 * x + (3.0 if version == "2" else 0.0)
        examples.append(example(i, (x, truth - 0.2), prediction, truth, version=version, endpoint=endpoint,
                                event_time=T0 + i))  # fmt: skip
    drift = [
        DriftVerdict(
            f"w{k}",
            "main",
            "1",
            T0 + 20 * k,
            T0 + 20 * k + 20,
            20,
            "time",
            "drift" if k in (6, 7) else "no_drift",  # type: ignore[arg-type]
            k in (6, 7),
            "alibi-ks",
            "bonferroni",
            0.05,
            0.0,
            threshold=0.025,
            threshold_on="p_val",
            p_values={"load": 1e-6 if k in (6, 7) else 0.4, "speed": 0.5},
        )
        for k in range(12)
    ]
    rollouts = [
        RolloutEvent("plant/pump", "pump", "started", "progressing", candidate=2, champion=1, at=T0 + 150),
        RolloutEvent("plant/pump", "pump", "step", "progressing", candidate=2, champion=1, weight=20,
                     at=T0 + 151),
        RolloutEvent("plant/pump", "pump", "promoted", "idle", candidate=2, champion=2, at=T0 + 170),
        RolloutEvent("plant/pump", "pump", "started", "progressing", candidate=3, champion=2, at=T0 + 200),
        RolloutEvent("plant/pump", "pump", "step", "progressing", candidate=3, champion=2, weight=10,
                     at=T0 + 201),
        RolloutEvent("plant/pump", "pump", "rolled_back", "idle", candidate=3, champion=2,
                     reason="2 failed checks: canary MAE above the champion's", at=T0 + 220),
    ]  # fmt: skip
    candidates = [
        CandidateVersion(2, 1, "drift", "c2", "pass", "promoted", "all steps passed"),
        CandidateVersion(3, 2, "every", "c3", "pass", "rejected", "2 failed checks"),
    ]
    return LoopRecords(logged(examples, start=T0 + 5), drift, rollouts, candidates, duplicates=4)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    records = run_records()
    stream = score(records.examples, Doubler(), FeatureColumn(1, "last reading"))
    report = build_report(
        records,
        stream,
        window=WindowSpec("log_time", 20.0),
        change_at=T0 + CHANGE_ROW,
        frozen_label="v1 frozen",
    )
    files = write_outputs(report, stream, tmp_path_factory.mktemp("report") / "run" / "report.json")
    return report, files


def test_json_report_has_the_replay_fields_with_their_types(written: tuple) -> None:
    _, files = written
    data = json.loads(files.json.read_text())
    assert data["task"] == "regression" and data["rows"] == 240
    for source in ("loop", "frozen", "baseline"):
        assert set(data[source]) == {"mae", "rmse"}
        assert all(isinstance(v, float) for v in data[source].values())
    assert (data["drift_events"], data["candidates"], data["promotions"], data["rollbacks"]) == (2, 2, 1, 1)
    assert data["duplicates"] == 4
    # measured: after the change the frozen v1 misses by ~3, the loop only until its v2 serves
    assert data["change"]["after"]["frozen"]["mae"] == pytest.approx(3.0, abs=0.1)
    assert data["change"]["after"]["loop"]["mae"] < 1.5
    assert data["change"]["before"]["loop"]["mae"] == pytest.approx(data["change"]["before"]["frozen"]["mae"])
    windows = data["windows"]
    assert len(windows) == 12 and sum(w["rows"] for w in windows) == 240
    assert all(
        set(w) >= {"start", "end", "rows", "loop", "frozen", "baseline", "model_versions"} for w in windows
    )
    assert {(v["predictor"], v["model_version"]) for v in data["by_version"]} == {
        ("main", "1"), ("canary", "2"), ("main", "2"),
    }  # fmt: skip
    assert [o["reason"] for o in data["outcomes"] if o["decision"] == "rolled_back"] == [
        "2 failed checks: canary MAE above the champion's"
    ]
    assert data["drift"][6]["min_p_value"] == pytest.approx(1e-6)


def test_pngs_are_written_beside_the_json(written: tuple) -> None:
    _, files = written
    assert set(files.images) == {"error", "drift", "traffic"}
    for path in files.images.values():
        assert path.parent == files.json.parent
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_with_the_images_and_tables(written: tuple) -> None:
    _, files = written
    html = files.html.read_text()
    assert files.html == files.json.with_suffix(".html")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"(https?:|//[a-z]|<link|<script|@import|url\()", text, re.IGNORECASE)
    assert text.count("data:") == 0
    for text in (
        "v1 frozen",
        "2 failed checks: canary MAE above the champion&#x27;s",
        "rolled_back",
        "promoted",
    ):
        assert text in html


def test_terminal_summary_names_every_source_and_the_outcomes(written: tuple) -> None:
    report, _ = written
    console = Console(record=True, width=140)
    print_summary(report, console)
    text = console.export_text()
    for expected in ("loop", "v1 frozen", "persistence of last reading", "after change", "promoted 1",
                     "candidate v3 rolled back: 2 failed checks"):  # fmt: skip
        assert expected in text


def test_a_classification_run_with_no_drift_and_no_rollout_still_writes_every_file(tmp_path: Path) -> None:
    from driftloop_feedback.report import LastTruth

    from tests.report.streams import Threshold
    from tests.report.test_metrics import classification_stream

    stream = score(classification_stream(), Threshold(), LastTruth(1))
    files = write_outputs(build_report(LoopRecords(), stream), stream, tmp_path / "c.json")
    data = json.loads(files.json.read_text())
    assert set(data["loop"]) == {"accuracy", "log_loss"}
    assert (data["drift_events"], data["candidates"], data["promotions"], data["rollbacks"]) == (0, 0, 0, 0)
    assert data["candidates_from"] == "rollouts" and data["change"] is None
    assert files.html.read_text().count("data:image/png;base64,") == 3
