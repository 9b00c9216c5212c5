"""MLServers forked from one fork server: real processes, real V2 inference, stopped by their groups."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import psutil
import pytest
from driftloop_graphs.run_state import RunState
from sklearn.linear_model import LinearRegression

from driftloop.mlserver_forkserver import ForkServer, preload_modules
from driftloop.mlserver_process import MLServerProcess, MLServerStartError

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def write_model(repository: Path, name: str, implementation: str, **parameters: object) -> None:
    folder = repository / name
    folder.mkdir(parents=True)
    settings = {"name": name, "implementation": implementation, "parameters": parameters}
    (folder / "model-settings.json").write_text(json.dumps(settings))


def linear_repository(root: Path, seed: int) -> tuple[Path, LinearRegression, np.ndarray]:
    """A scikit-learn model served by MLServer's own runtime; predictions run numpy/BLAS after the fork."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 64))
    model = LinearRegression().fit(x, x @ rng.normal(size=64) + seed)
    repository = root / f"repo-{seed}"
    write_model(repository, "linear", "mlserver_sklearn.SKLearnModel", uri="./model.joblib")
    joblib.dump(model, repository / "linear" / "model.joblib")
    return repository, model, rng.normal(size=(200, 64))


def gone(pids: list[int], timeout_s: float) -> list[int]:
    """Polls until none of ``pids`` runs (zombies count as gone); returns the ones still running."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    log = tmp_path_factory.mktemp("zygote") / "forkserver.log"
    preload = ["no_such_module_to_preload", "mlserver.cli.main", "mlserver_sklearn"]
    with ForkServer(preload=preload, env={**os.environ, "PYTHONPATH": str(REPO)}, log_path=log) as server:
        yield server
    assert server.pid is not None and gone([server.pid], 10) == []


def test_preload_modules_follows_the_runtimes_imports_of_heavy_libraries(tmp_path: Path) -> None:
    write_model(tmp_path / "a", "one", "driftloop_servers.model_runtime.IncrementalModelRuntime")
    write_model(tmp_path / "b", "two", "mlserver_sklearn.SKLearnModel")
    modules = preload_modules([tmp_path / "a", tmp_path / "b"], {"MLFLOW_TRACKING_URI": "sqlite:///x.db"})
    assert modules[0] == "mlserver.cli.main"
    assert modules[-2:] == ["driftloop_servers.model_runtime", "mlserver_sklearn"]
    # imported inside functions of driftloop_servers.artifacts, which the runtime imports
    assert {"mlflow.sklearn", "mlflow.tracking", "sklearn.linear_model"} <= set(modules)
    assert "mlflow.store.model_registry.sqlalchemy_store" in modules  # a sqlite registry
    assert "mlflow.store.model_registry.sqlalchemy_store" not in preload_modules([tmp_path / "a"], {})
    assert "sys" not in modules and not any(m.startswith("driftloop_servers.") for m in modules[:-2])
    light = tmp_path / "light"
    write_model(light, "echo", "tests.graphs.echo_runtime.EchoRuntime")
    assert not any(
        m.split(".")[0] in {"mlflow", "sklearn", "alibi_detect"} for m in preload_modules([light], {})
    )


def test_two_forked_mlservers_serve_v2_inference_correctly(zygote: ForkServer, tmp_path: Path) -> None:
    built = [linear_repository(tmp_path, seed) for seed in (1, 2)]
    servers = [
        MLServerProcess(repository, run_dir=tmp_path / f"run-{i}", forkserver=zygote)
        for i, (repository, _, _) in enumerate(built)
    ]
    try:
        for server in servers:  # the second waits for nothing: the zygote imported once
            server.start()
        # a preload that fails is reported and skipped; the rest was imported
        assert "no_such_module_to_preload" in zygote.preload_failed
        assert {"mlserver.cli.main", "mlserver_sklearn"} <= set(zygote.preloaded)
        for server, (_, model, x) in zip(servers, built, strict=True):
            assert server.forked and server.pid is not None
            assert psutil.Process(server.pid).ppid() == zygote.pid
            assert os.getpgid(server.pid) == server.pid  # its own group, stopped by it
            request = {
                "inputs": [
                    {"name": "x", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}
                ]
            }
            r = httpx.post(f"{server.url}/v2/models/linear/infer", json=request, timeout=30)
            assert r.status_code == 200, r.text
            assert np.allclose(r.json()["outputs"][0]["data"], model.predict(x))
            assert server.log_path is not None and "linear" in server.log_path.read_text()
    finally:
        for server in servers:
            server.stop()
    assert not any(server.running for server in servers)


def test_a_forked_model_that_cannot_load_fails_start_with_the_log(zygote: ForkServer, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "broken", "no_such_module.NoSuchRuntime")
    server = MLServerProcess(repository, run_dir=tmp_path / "run", forkserver=zygote, startup_timeout_s=120)
    with pytest.raises(MLServerStartError, match="no_such_module") as raised:
        server.start()
    assert server.forked and "log" in str(raised.value)
    assert not server.running


def test_stop_kills_the_forked_servers_whole_group(zygote: ForkServer, tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "noop", "mlserver.MLModel")
    server = MLServerProcess(repository, parallel_workers=1, run_dir=tmp_path / "run", forkserver=zygote)
    with server:
        assert server.forked and server.pid is not None
        group = [server.pid, *(p.pid for p in psutil.Process(server.pid).children(recursive=True))]
        assert len(group) >= 2, "parallel_workers=1 runs a worker process beside the server"
        assert httpx.get(f"{server.url}/v2/models/noop/ready", timeout=10).status_code == 200
    assert gone(group, 10) == []
    assert zygote.returncode(group[0]) is not None  # reaped by the zygote, its exit reported


def test_killing_driftloop_up_leaves_no_mlserver_running(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    manifest, models = "tests/graphs/manifests/echo-canary.yaml", "tests/graphs/models"
    process = subprocess.Popen(
        [sys.executable, "-m", "driftloop", "up", manifest, "--models", models, "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    everything: list[int] = [process.pid]
    try:
        state, deadline = None, time.monotonic() + 180
        while state is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            state = RunState.read(home / "run" / "local-runtime")
        assert state is not None, "driftloop up did not become ready"
        zygotes = {psutil.Process(pid).ppid() for pid in state.mlserver_pids}
        assert len(state.mlserver_pids) == 3 and len(zygotes) == 1 and process.pid not in zygotes
        everything += [*zygotes, *state.mlserver_pids]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        assert gone(everything, 30) == []  # the zygote sees its control pipe close and stops them
    finally:
        for pid in reversed(everything):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        process.wait(10)


def test_killing_the_zygote_stops_its_mlservers(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "noop", "mlserver.MLModel")
    zygote = ForkServer(preload=["mlserver.cli.main"], log_path=tmp_path / "forkserver.log").start()
    server = MLServerProcess(repository, run_dir=tmp_path / "run", forkserver=zygote)
    try:
        server.start()
        assert server.pid is not None and zygote.pid is not None
        os.killpg(zygote.pid, signal.SIGKILL)  # no chance to stop them: the death signal (SIGTERM) does
        assert gone([zygote.pid, server.pid], 30) == []
        assert not server.running
    finally:
        server.stop()
        zygote.close()


def test_without_a_running_fork_server_mlserver_starts_as_a_process(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "noop", "mlserver.MLModel")
    zygote = ForkServer(preload=[], log_path=tmp_path / "forkserver.log").start()
    zygote.close()  # gone before the server starts: the plain `mlserver start` path takes over
    with MLServerProcess(repository, run_dir=tmp_path / "run", forkserver=zygote) as server:
        assert not server.forked and server.pid is not None
        assert psutil.Process(server.pid).ppid() == os.getpid()
        assert httpx.get(f"{server.url}/v2/models/noop/ready", timeout=10).status_code == 200
    assert not server.running
