"""`driftloop serve` and `driftloop demo` as a user runs them: real processes, real MLServer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.mlserver import TrainedState

pytestmark = pytest.mark.integration

DRIFTLOOP = [sys.executable, "-m", "driftloop"]


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIFTLOOP_", "MLFLOW_"))}
    return {**env, "DRIFTLOOP_HOME": str(home)}


def test_serve_runs_until_terminated_and_takes_mlserver_with_it(
    trained_state: TrainedState, tmp_path: Path
) -> None:
    log = tmp_path / "serve.out"
    with log.open("wb") as out:
        serve = subprocess.Popen(
            [*DRIFTLOOP, "serve"],
            env=cli_env(trained_state.state.resolved_home()),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C to stop" not in log.read_text() and time.monotonic() < deadline:
            assert serve.poll() is None, log.read_text()
            time.sleep(0.2)
        text = log.read_text()
        url = re.search(r"V2 HTTP\s+(http://127\.0\.0\.1:\d+)", text)
        pid = re.search(r"\(pid (\d+),", text)
        assert url and pid, text
        assert httpx.get(f"{url.group(1)}/v2/models/bearing-temp/ready", timeout=10).status_code == 200
        mlserver = psutil.Process(int(pid.group(1)))
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) == 0, log.read_text()
        assert "stopped" in log.read_text()
        assert not mlserver.is_running() or mlserver.status() == psutil.STATUS_ZOMBIE
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)


def test_demo_end_to_end_on_a_fresh_state(tmp_path: Path) -> None:
    done = subprocess.run(
        [*DRIFTLOOP, "demo", "--assets", "2", "--days", "6", "--seed", "5"],
        env=cli_env(tmp_path / "fresh-home"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for step in range(1, 10):
        assert f"[{step}/9]" in out
    assert "registered pump-bearing-temp version 1 @champion" in out
    assert "manifests/pump-bearing-temp.yaml ready in" in out
    rows = re.findall(r"^\s+(pump-0\d)\s+([\d.]+) C\s+([\d.]+) C\s+(yes|no)$", out, re.MULTILINE)
    assert [r[0] for r in rows] == ["pump-01", "pump-02"]
    assert all(abs(float(now) - float(ahead)) < 15 for _, now, ahead, _ in rows)
    assert re.search(r"Seldon-Puid driftloop-demo-[0-9a-f-]{36}; request and response logged", out)
    assert re.search(r"2 truth value\(s\) for driftloop-demo-\S+ accepted", out)
    mae = re.search(
        r"2 labelled example\(s\) on topic driftloop.labelled \(model version 1\); "
        r"forecast MAE on them ([\d.]+) C",
        out,
    )
    assert mae is not None and float(mae.group(1)) < 15, out
    assert "MLServers and feedback API stopped" in out and "demo done" in out
    # MLServer ran with its working directory under the demo's DRIFTLOOP_HOME: nothing is left there
    left = [p.pid for p in psutil.process_iter(["cwd"]) if str(p.info["cwd"] or "").startswith(str(tmp_path))]
    assert left == []
    assert list((tmp_path / "fresh-home" / "run" / "demo-runtime").glob("*/*/mlserver/mlserver.log"))
