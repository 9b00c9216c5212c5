"""The shipped manifests on the real runtimes: the canary manifest (main 90 / canary 10 / shadow)
runs the outlier -> forecaster chain from models/ against a registered champion/challenger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment

from driftloop.cli.serve import server_env
from driftloop.eventlog import MemoryEventLog
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pump_canary(trained_state: TrainedState) -> Iterator[RuntimeThread]:
    registry = trained_state.registry
    champion = registry.get_alias("pump-bearing-temp", "champion")
    registry.set_alias("pump-bearing-temp", "challenger", champion.version)
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(trained_state.state.resolved_home()))
    deployments = [
        Deployment.from_doc(d) for d in load_manifests(REPO / "manifests/pump-bearing-temp-canary.yaml")
    ]
    settings = RuntimeSettings(
        models_root=REPO / "models",
        run_dir=trained_state.state.run_dir() / "pump-canary",
        mlserver_env=server_env(trained_state.state),
    )
    try:
        with RuntimeThread(LocalRuntime(deployments, settings, MemoryEventLog())) as thread:
            yield thread
    finally:
        mp.undo()


def test_outlier_then_forecaster_chain_answers_through_the_ingress(
    pump_canary: RuntimeThread, trained_state: TrainedState
) -> None:
    rt = pump_canary.runtime
    print(f"pump canary (3 predictors x 2 nodes, real runtimes) ready in {pump_canary.startup_s:.1f} s")
    url = rt.url(rt.deployments[0]) + "/v2/models/infer"
    rows = trained_state.rows(4)
    request = {
        "inputs": [
            {
                "name": "features",
                "shape": list(rows.shape),
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            },
            {"name": "asset_id", "shape": [4], "datatype": "BYTES", "data": ["pump-01"] * 4},
        ]
    }
    seen = set()
    for i in range(40):
        r = httpx.post(url, json=request, headers={"Seldon-Puid": f"pump-{i}"}, timeout=60)
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert outputs["prediction"]["datatype"] == "FP64" and outputs["prediction"]["shape"] == [4]
        assert outputs["outlier_flag"]["shape"] == [4] and outputs["outlier_score"]["shape"] == [4]
        seen.add(r.json()["parameters"]["model_uri"])
    assert seen  # the forecaster reports which registered version answered
    bad = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}]}
    r = httpx.post(url, json=bad, timeout=60)
    assert 400 <= r.status_code < 500, r.text  # the outlier node's 4xx, passed through as JSON
    assert r.json()
