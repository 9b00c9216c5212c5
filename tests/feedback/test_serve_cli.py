"""`driftloop feedback serve` as a process: the port it listens on, and a port it cannot have."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.feedback.pipeline_support import REPO, api_url

pytestmark = pytest.mark.integration


def test_serve_on_port_0_prints_the_port_it_got_and_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    """`driftloop feedback serve --port 0` listens on a free port and says which; a port in use is
    refused with a message, not a stack trace."""

    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(tmp_path / "home"),
        "DRIFTLOOP_FEEDBACK_TOKEN": "t0ken-for-tests",
    }
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "driftloop", "feedback", "serve", "--port", "0"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = api_url(log_path)
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and api.poll() is None, log_path.read_text()
                time.sleep(0.2)
        assert ready.status_code == 200
        port = int(base.rsplit(":", 1)[1])
        assert port > 0
        with socket.socket() as probe:  # the printed port is the one it listens on
            assert probe.connect_ex(("127.0.0.1", port)) == 0
        taken = subprocess.run(
            [sys.executable, "-m", "driftloop", "feedback", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert taken.returncode != 0
        assert f"cannot listen on 127.0.0.1:{port}" in taken.stderr and "Traceback" not in taken.stderr
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(30)


def test_production_with_a_weak_token_refuses_to_start_without_showing_the_token(tmp_path: Path) -> None:
    """Issue 12, class 7: the refusal says what is wrong with the token, never the token itself."""
    token = "hunter2-short"
    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(tmp_path / "home"),
        "DRIFTLOOP_FEEDBACK_MODE": "production",
        "DRIFTLOOP_FEEDBACK_TOKEN": token,
    }
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    refused = subprocess.run(
        [sys.executable, "-m", "driftloop", "feedback", "serve", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "DRIFTLOOP_FEEDBACK_TOKEN is shorter than 16 characters" in refused.stderr, refused.stderr
    assert token not in refused.stderr + refused.stdout and "Traceback" not in refused.stderr
