"""A control-API model swap whose load fails (a registry version that does not exist) on the real
runtimes and a real MLflow registry: a one-line 502 naming the cause, settings and the runtime's view
unchanged, the previous model still serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment

from driftloop.eventlog import MemoryEventLog
from driftloop.learning.v2_payload import features_request
from driftloop.mlserver_env import server_env
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def pump(
    trained_state: TrainedState, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RuntimeThread]:
    monkeypatch.setenv("DRIFTLOOP_HOME", str(trained_state.state.resolved_home()))
    deployments = [Deployment.from_doc(d) for d in load_manifests(REPO / "manifests/pump-bearing-temp.yaml")]
    settings = RuntimeSettings(
        models_root=REPO / "models", run_dir=tmp_path / "run", mlserver_env=server_env(trained_state.state)
    )
    with RuntimeThread(LocalRuntime(deployments, settings, MemoryEventLog())) as thread:
        yield thread


def test_a_swap_to_a_missing_version_names_the_cause_and_changes_nothing(
    pump: RuntimeThread, trained_state: TrainedState
) -> None:
    rt = pump.runtime
    key = ("plant", "pump-bearing-temp", "main")
    settings_file = rt.repositories[key] / "bearing-temp" / "model-settings.json"
    before = settings_file.read_text()
    url = rt.url(rt.deployments[0])
    body = features_request(trained_state.rows(2))
    assert httpx.post(f"{url}/v2/models/infer", json=body, timeout=30).status_code == 200
    with httpx.Client(
        base_url=f"http://127.0.0.1:{rt.control_port}", headers={"Authorization": f"Bearer {rt.token}"}
    ) as control:
        swap = control.put(
            "/v1/deployments/plant/pump-bearing-temp/predictors/main/nodes/bearing-temp/model",
            json={"model_uri": "models:/pump-bearing-temp/999"},
            timeout=120,
        )
        assert swap.status_code == 502, swap.text
        message = swap.json()["error"]
        assert "999" in message and "not found" in message.lower()
        assert "\n" not in message and "Traceback" not in message and 'File "' not in message
        assert settings_file.read_text() == before
        state = control.get("/v1/deployments/plant/pump-bearing-temp").json()
        assert state["predictors"][0]["nodes"]["bearing-temp"] == "models:/pump-bearing-temp@champion"
    assert httpx.post(f"{url}/v2/models/infer", json=body, timeout=30).status_code == 200
