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

REPO_ROOT = Path(__file__).resolve().parents[2]
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
            [*DRIFTLOOP, "serve", "--repository", str(REPO_ROOT / "models")],
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
