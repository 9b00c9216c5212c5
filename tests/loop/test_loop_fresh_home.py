"""``driftloop loop run`` on a fresh DRIFTLOOP_HOME (no MLflow store yet, no champion): the monitor,
trainer and validator all open the registry at start; none of them crashes, each waits for a champion
and says so; SIGTERM stops the loop and every worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

WORKERS = ("monitor", "trainer", "validator")
WAITING = {  # what each prints once it has looked in the registry
    "monitor": "monitor ready",
    "trainer": "no champion registered yet",
    "validator": "validator waiting",
}


def status(home: Path) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads((home / "run" / "loop" / "loop.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"workers": []}
    return found


def test_fresh_home_no_worker_crashes_on_the_new_registry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "DRIFTLOOP_MONITOR_BACKEND": "permissive"}
    for name in ("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", "DRIFTLOOP_MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    loop = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "driftloop",
            "loop",
            "run",
            "--without",
            "feedback-api",
            "--without",
            "joiner",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    logs = home / "run" / "loop"
    try:
        deadline = time.monotonic() + 120
        while not all(
            (logs / f"{w}.log").exists() and WAITING[w] in (logs / f"{w}.log").read_text() for w in WORKERS
        ):
            assert loop.poll() is None and time.monotonic() < deadline, status(home)
            time.sleep(0.3)
        time.sleep(2)  # a crash after the first look would be seen by the supervisor by now
        workers = status(home)["workers"]
        pids = [w["pid"] for w in workers]
    finally:
        if loop.poll() is None:
            os.kill(loop.pid, signal.SIGTERM)
        loop.wait(timeout=60)
    crashed = {w["name"]: w["last_exit"] for w in workers if w["restarts"] or w["status"] != "running"}
    tails = {w: (logs / f"{w}.log").read_text()[-600:] for w in crashed}
    assert crashed == {}, tails
    assert loop.returncode == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
