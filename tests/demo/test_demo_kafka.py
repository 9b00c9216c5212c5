"""`driftloop demo` end to end on a REAL Kafka broker (the session's broker fixture;
DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS set for the demo and every worker it starts): the same closed loop and
the same assertions as the embedded demo test: the regime change is detected, a candidate trained,
validated, canaried and promoted; the loop's error after the change is below the frozen model's; no
client request failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_demo_on_kafka_promotes_a_candidate_after_the_regime_change(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "COLUMNS": "100",
    }
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "driftloop", "demo", "--checkout", str(REPO)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    wall = time.monotonic() - started
    print(f"driftloop demo on Kafka: {wall:.0f} s\n{done.stdout[-3000:]}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    report = json.loads((home / "report" / "report.json").read_text())
    run = json.loads((home / "report" / "demo-run.json").read_text())
    assert run["failed"] == 0 and run["calls"] > 100 and run["error"] == "", run
    assert report["drift_events"] >= 1 and report["candidates"] >= 1
    promoted = [o for o in report["outcomes"] if o["decision"] == "promoted"]
    assert promoted, report["outcomes"]
    winner = {c["version"]: c for c in report["candidate_versions"]}[promoted[0]["candidate"]]
    assert winner["validation"] == "pass" and winner["rollout"] == "promoted", winner
    after = report["change"]["after"]
    assert after["rows"] > 0 and report["change"]["before"]["rows"] > 0
    assert after["loop"]["mae"] < after["frozen"]["mae"], after
    # the loop ran on the broker, not on an embedded log under the demo's home
    assert not (home / "demo" / "eventlog" / "eventlog.db").exists()
    status = json.loads((home / "demo" / "run" / "loop" / "loop.json").read_text())
    for pid in [status["pid"], *(w["pid"] for w in status["workers"] if w["pid"])]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
