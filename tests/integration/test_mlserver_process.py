"""MLServerProcess: a real ``mlserver start`` with a worker process, stopped by process group; clear
errors when the repository cannot be served."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
import pytest

from driftloop.mlserver_process import MLServerProcess, MLServerStartError

pytestmark = pytest.mark.integration


def write_model(repository: Path, name: str, implementation: str) -> None:
    folder = repository / name
    folder.mkdir(parents=True)
    (folder / "model-settings.json").write_text(json.dumps({"name": name, "implementation": implementation}))


def test_parallel_worker_server_starts_on_loopback_and_stops_with_its_workers(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "noop", "mlserver.MLModel")  # MLServer's base class loads without artifacts
    server = MLServerProcess(repository, parallel_workers=1, run_dir=tmp_path / "run")
    with server:
        assert server.pid is not None
        group = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        assert len(group) >= 2, "parallel_workers=1 runs a worker process beside the server"
        assert server.rss_bytes() > sum(p.memory_info().rss for p in group[:1])
        assert httpx.get(f"{server.url}/v2/models/noop/ready", timeout=10).status_code == 200
        assert httpx.get(server.metrics_url, timeout=10).status_code == 200
        recorded = json.loads((tmp_path / "run" / "mlserver.json").read_text())
        assert recorded["pid"] == server.pid and recorded["http"] == server.http_port
    assert not server.running
    _gone, alive = psutil.wait_procs(group, timeout=10)
    assert alive == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v2/health/live", timeout=2)


def test_a_model_that_cannot_load_fails_start_with_the_log(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "broken", "no_such_module.NoSuchRuntime")
    server = MLServerProcess(repository, run_dir=tmp_path / "run", startup_timeout_s=120)
    with pytest.raises(MLServerStartError, match="no_such_module") as raised:
        server.start()
    assert "log" in str(raised.value)
    assert not server.running


def test_a_settings_json_in_the_repository_is_refused(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text('{"host": "0.0.0.0"}')
    with pytest.raises(MLServerStartError, match=r"settings\.json exists"):
        MLServerProcess(tmp_path).start()


def test_a_missing_repository_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MLServerStartError, match="is not a folder"):
        MLServerProcess(tmp_path / "nowhere").start()


def test_a_port_taken_before_mlserver_binds_it_is_retried_on_other_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between ``free_port`` and MLServer's bind, another socket can take the port: that start fails
    with "address already in use", and the next one, on fresh ports, serves."""
    import socket

    import driftloop.mlserver_process as mlserver_process

    repository = tmp_path / "repo"
    write_model(repository, "noop", "mlserver.MLModel")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = mlserver_process.free_port
        picks = iter([taken])  # the first start's HTTP port is one that is already listening

        def first_pick_taken() -> int:
            return next(picks, None) or real_free_port()

        monkeypatch.setattr(mlserver_process, "free_port", first_pick_taken)
        server = MLServerProcess(repository, run_dir=tmp_path / "run", startup_timeout_s=120)
        with server:
            assert server.http_port != taken
            assert httpx.get(f"{server.url}/v2/models/noop/ready", timeout=10).status_code == 200
        assert not server.running


def test_a_start_that_fails_for_another_reason_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repo"
    write_model(repository, "broken", "no_such_module.NoSuchRuntime")
    server = MLServerProcess(repository, run_dir=tmp_path / "run", startup_timeout_s=120)
    starts: list[int] = []
    original = server._start_on_free_ports

    def counted(run_dir: Path) -> MLServerProcess:
        starts.append(1)
        return original(run_dir)

    monkeypatch.setattr(server, "_start_on_free_ports", counted)
    with pytest.raises(MLServerStartError, match="no_such_module"):
        server.start()
    assert starts == [1]
