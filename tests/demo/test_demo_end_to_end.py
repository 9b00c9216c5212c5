"""`driftloop demo` end to end on the embedded event log (real processes: the loop, the local runtime's
MLServers, every worker): the injected regime change (+6 C on the bearings) is detected, a candidate is
trained, validated, canaried and promoted by the rollout controller; the report written to disk shows the
loop's error after the change below the frozen initial model's; no client request failed."""

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


def test_demo_promotes_a_candidate_after_the_regime_change(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "COLUMNS": "100"}
    for name in ("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "DRIFTLOOP_MLFLOW_TRACKING_URI"):
        env.pop(name, None)
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
    print(f"driftloop demo: {wall:.0f} s\n{done.stdout[-3000:]}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    report = json.loads((home / "report" / "report.json").read_text())
    run = json.loads((home / "report" / "demo-run.json").read_text())
    assert run["failed"] == 0 and run["calls"] > 100 and run["error"] == "", run
    assert report["drift_events"] >= 1
    assert report["candidates"] >= 1
    promoted = [o for o in report["outcomes"] if o["decision"] == "promoted"]
    assert promoted, report["outcomes"]
    verdicts = {c["version"]: c for c in report["candidate_versions"]}
    winner = verdicts[promoted[0]["candidate"]]
    assert winner["validation"] == "pass" and winner["rollout"] == "promoted", verdicts
    assert winner["trigger"] == "drift", winner
    after = report["change"]["after"]
    assert after["rows"] > 0 and report["change"]["before"]["rows"] > 0
    assert after["loop"]["mae"] < after["frozen"]["mae"], after
    for name in ("report.html", "report-error.png", "report-drift.png", "report-traffic.png"):
        assert (home / "report" / name).stat().st_size > 0
    html = (home / "report" / "report.html").read_text()
    assert "data:image/png;base64" in html and "http://" not in html
    # everything the demo started is stopped: no loop status PID alive
    status = json.loads((home / "demo" / "run" / "loop" / "loop.json").read_text())
    for pid in [status["pid"], *(w["pid"] for w in status["workers"] if w["pid"])]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
