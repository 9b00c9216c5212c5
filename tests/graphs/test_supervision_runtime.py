"""Supervised MLServers on real processes: kill -9 a predictor's MLServer under a running LocalRuntime;
it is reaped (no zombie), its requests are clean 503s and /ready is 503 while it is down (/live, which is
about the ingress process, stays 200), a model swap on it is refused with the settings unchanged, and it
is restarted (plain process, or forked from the fork server) and serves again without restarting the
runtime; the restart is in /metrics."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.spec import Deployment
from driftloop_graphs.supervision import RestartBackoff

from driftloop.eventlog import MemoryEventLog
from tests.graphs.conftest import ECHO_CANARY, HERE, echo_settings
from tests.graphs.load import REQUEST
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration
ECHO_SINGLE = HERE / "manifests" / "echo-single.yaml"
DOWN_FOR_S = 4.0  # the first restart waits this long: time to look at the runtime while a node is down


@pytest.fixture(params=[ECHO_SINGLE, ECHO_CANARY], ids=["plain-process", "forked"])
def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RuntimeThread]:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    from driftloop_graphs.runtime import LocalRuntime

    deployments = [Deployment.from_doc(doc) for doc in load_manifests(request.param)]
    settings = echo_settings(
        tmp_path / "run",
        restart_backoff=RestartBackoff(initial_s=DOWN_FOR_S, max_s=DOWN_FOR_S),
        supervise_poll_s=0.1,
    )
    with RuntimeThread(LocalRuntime(deployments, settings, MemoryEventLog())) as thread:
        yield thread


def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def gone_or_reaped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # running: its PID was reused
    except psutil.NoSuchProcess:
        return True


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_killed_mlserver_is_reaped_answered_503_and_restarted(runtime: RuntimeThread) -> None:
    rt = runtime.runtime
    deployment = rt.deployments[0]
    ingress = f"http://127.0.0.1:{rt.port}"
    url = rt.url(deployment)
    key = (deployment.namespace, deployment.name, "main")
    server = rt.servers[key]
    node = deployment.predictor("main").graph.name  # type: ignore[union-attr]
    settings_file = rt.repositories[key] / node / "model-settings.json"
    settings_before = settings_file.read_text()
    control = httpx.Client(
        base_url=f"http://127.0.0.1:{rt.control_port}", headers={"Authorization": f"Bearer {rt.token}"}
    )
    base = f"/v1/deployments/{deployment.namespace}/{deployment.name}"
    model_path = f"{base}/predictors/main/nodes/{node}/model"
    # the main predictor answers every request with this puid (canary: 90/10 by hash of the puid)
    puid = next(f"p{i}" for i in range(1000) if rt.runtimes[key[:2]].traffic.choose(f"p{i}") == "main")
    infer = lambda: httpx.post(  # noqa: E731
        f"{url}/v2/models/infer", json=REQUEST, headers={"Seldon-Puid": puid}, timeout=30
    )
    assert infer().status_code == 200
    assert httpx.get(f"{ingress}/ready").status_code == 200
    old_pid = server.pid
    assert old_pid is not None

    os.kill(old_pid, signal.SIGKILL)
    until(lambda: gone_or_reaped(old_pid), 5, "the killed MLServer is reaped, not left a zombie")
    down = infer()
    assert down.status_code == 503 and "unreachable" in down.json()["error"]
    assert httpx.get(f"{ingress}/ready").status_code == 503
    assert httpx.get(f"{url}/v2/health/ready").status_code == 503
    assert httpx.get(f"{ingress}/live").status_code == 200  # the ingress process itself is alive
    metrics = httpx.get(f"{ingress}/metrics").text
    assert metric(metrics, "driftloop_mlserver_up", predictor="main") == 0.0
    assert metric(metrics, "driftloop_mlserver_exits_total", predictor="main") == 1.0

    swap = control.put(model_path, json={"model_uri": "file:///elsewhere"})
    assert swap.status_code == 503
    message = swap.json()["error"]
    assert "down" in message and "\n" not in message and "Traceback" not in message
    assert settings_file.read_text() == settings_before
    described = control.get(base).json()
    main = next(p for p in described["predictors"] if p["name"] == "main")
    assert main["mlserver_state"] in ("down", "restarting")
    assert main["nodes"][node] != "file:///elsewhere"

    until(lambda: infer().status_code == 200, 60, "the restarted MLServer serves again")
    until(lambda: httpx.get(f"{ingress}/ready").status_code == 200, 10, "/ready is 200 again")
    assert server.pid not in (None, old_pid) and server.running
    assert (server.log_path is not None) and server.log_path.with_name("mlserver.previous.log").exists()
    metrics = httpx.get(f"{ingress}/metrics").text
    assert metric(metrics, "driftloop_mlserver_restarts_total", predictor="main", outcome="ok") == 1.0
    assert metric(metrics, "driftloop_mlserver_up", predictor="main") == 1.0
    described = control.get(base).json()
    main = next(p for p in described["predictors"] if p["name"] == "main")
    assert main["mlserver_state"] == "up" and main["mlserver_restarts"] == 1
    assert json.loads(settings_file.read_text()) == json.loads(settings_before)
    control.close()
