"""`driftloop up` / `driftloop down` as a user runs them: separate processes, the embedded event log."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from driftloop_graphs.run_state import RunState, child_record, runtime_dir

from driftloop.eventlog import open_event_log
from driftloop.mlserver_process import MLServerProcess
from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, parse_event
from driftloop.settings import StateSettings
from tests.graphs.load import REQUEST

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def driftloop(home: Path, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "driftloop", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, RunState]]:
    home = tmp_path / "home"
    process = driftloop(
        home,
        "up",
        "tests/graphs/manifests/echo-single.yaml",
        "--port",
        "0",
        "--models",
        "tests/graphs/models",
    )
    directory = home / "run" / "local-runtime"
    try:
        deadline = time.monotonic() + 180
        state = None
        while state is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            state = RunState.read(directory) if directory.exists() else None
        assert state is not None, (
            process.stdout.read().decode() if process.poll() is not None else "not ready"
        )
        yield process, home, state
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def test_up_serves_logs_to_the_embedded_log_and_down_stops_everything(
    up: tuple[subprocess.Popen[bytes], Path, RunState],
) -> None:
    process, home, state = up
    directory = home / "run" / "local-runtime"
    assert state.ready_s > 0 and state.pid == process.pid
    assert stat.S_IMODE((directory / "control.token").stat().st_mode) == 0o600
    url = state.deployments[0]["url"]
    r = httpx.post(f"{url}/v2/models/infer", json=REQUEST, headers={"Seldon-Puid": "cli-1"}, timeout=30)
    assert r.status_code == 200 and r.headers["Seldon-Puid"] == "cli-1"

    again = driftloop(home, "up", "tests/graphs/manifests/echo-single.yaml", "--port", "0")
    out, _ = again.communicate(timeout=60)
    assert again.returncode != 0 and b"already running" in out

    mlservers = [p for p in state.mlserver_pids if psutil.pid_exists(p)]
    assert mlservers
    down = driftloop(home, "down")
    down_out, _ = down.communicate(timeout=90)
    assert down.returncode == 0, down_out
    process.wait(30)
    stdout = process.stdout.read().decode()  # type: ignore[union-attr]
    assert "ready in" in stdout and "stopped" in stdout
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in mlservers)
    assert RunState.read(directory) is None

    log = open_event_log(StateSettings(home=home))
    consumer = log.consumer("cli-test", ["seldon"])
    records = []
    for _ in range(10):
        records.extend(consumer.poll(timeout_s=0.5))
    consumer.close()
    log.close()
    events = [parse_event(r.headers, r.value) for r in records if r.header("requestid") == b"cli-1"]
    assert sorted(e.type for e in events) == sorted([TYPE_REQUEST, TYPE_RESPONSE])
    assert {(e.model_id, e.endpoint, e.deployment, e.namespace) for e in events} == {
        ("echo-model", "main", "echo-single", "bench")
    }


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_mlservers_of_a_killed_up_stop_by_themselves(
    up: tuple[subprocess.Popen[bytes], Path, RunState],
) -> None:
    process, _home, state = up
    mlservers = [p for p in state.mlserver_pids if alive(p)]
    assert mlservers and {c["pid"] for c in state.children} >= set(mlservers)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in mlservers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in mlservers), "MLServer outlived the killed `driftloop up`"


def test_down_after_a_dead_up_stops_the_children_it_recorded_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / "home"
    directory = runtime_dir(StateSettings(home=home))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(30)  # stands for the SIGKILLed `up`: its PID is gone
    # an MLServer that outlived its `up` (as one would without a watchdog); its parent here is the test
    orphan = MLServerProcess(
        REPO / "tests/graphs/models", env={"PYTHONPATH": str(REPO)}, run_dir=tmp_path / "mlserver"
    )
    # a process that now holds a PID recorded with another start time: `down` must not touch it
    bystander = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        orphan.start()
        assert orphan.pid is not None
        record = child_record(orphan.pid, "mlserver")
        assert record is not None
        reused = {"pid": bystander.pid, "create_time": psutil.Process(bystander.pid).create_time() - 5.0}
        RunState(
            pid=dead.pid,
            port=1,
            control_port=2,
            host="127.0.0.1",
            control_host="127.0.0.1",
            manifest="m.yaml",
            ready_s=1.0,
            mlserver_pids=[orphan.pid],
            children=[record, {**reused, "role": "mlserver"}],
        ).write(directory, "token")
        down = driftloop(home, "down")
        out, _ = down.communicate(timeout=90)
        assert down.returncode == 0, out
        assert str(orphan.pid).encode() in out
        deadline = time.monotonic() + 10
        while orphan.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not orphan.running, "down left the orphaned MLServer running"
        assert bystander.poll() is None, "down killed a process whose PID was only reused"
        assert RunState.read(directory) is None
    finally:
        orphan.stop()
        bystander.kill()
        bystander.wait(10)
