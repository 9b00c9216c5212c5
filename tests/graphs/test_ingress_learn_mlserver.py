"""``POST .../v2/models[/<model>]/learn`` through the local runtime to real MLServer processes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import joblib
import numpy as np
import pytest
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment
from sklearn.linear_model import SGDRegressor

from driftloop.eventlog import MemoryEventLog
from tests.graphs.conftest import REPO_ROOT
from tests.graphs.load import REQUEST, metric_value
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration

LABEL = {
    "inputs": [
        {"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]},
        {"name": "truth", "shape": [1], "datatype": "FP64", "data": [3.0]},
    ]
}


def test_a_node_whose_runtime_serves_no_learn_route_is_a_404_saying_what_serves_one(
    echo_canary: RuntimeThread,
) -> None:
    """The echo runtime has no learn route: each predictor's MLServer answers FastAPI's 404, which
    reaches the client naming the node and what online learning needs."""
    url = echo_canary.runtime.url(echo_canary.runtime.deployments[0])
    for path in ("/v2/models/echo-model/learn", "/v2/models/learn"):
        r = httpx.post(f"{url}{path}", json=LABEL, timeout=30)
        assert r.status_code == 404, r.text
        body = r.json()
        assert body["code"] == "node_refused"
        message = body["error"]
        assert message.startswith(
            "graph node 'echo-model' of predictor 'main' refused the learn call: Not Found"
        )
        assert "IncrementalModelRuntime with parameters.extra.online_learning: true" in message
        assert (
            "also failed: canary/echo-model (404 node_refused), shadow/echo-model (404 node_refused)"
            in message
        )
    assert httpx.post(f"{url}/v2/models/infer", json=REQUEST, timeout=30).status_code == 200
    metrics = httpx.get(f"http://127.0.0.1:{echo_canary.runtime.port}/metrics").text
    assert (
        metric_value(metrics, "driftloop_ingress_learn_total", deployment="echo", outcome="node_refused") == 2
    )


FEATURES = ["load_pct", "ambient_c"]


@pytest.fixture(scope="module")
def online_canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeThread]:
    """Main 50 / canary 50, one MODEL node each: IncrementalModelRuntime serving an SGDRegressor with
    ``online_learning: true``, on real MLServer processes."""
    home = tmp_path_factory.mktemp("home")
    models = tmp_path_factory.mktemp("models")
    folder = models / "forecaster"
    folder.mkdir()
    x = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2], [0.1, 0.9]])
    joblib.dump(SGDRegressor(random_state=0).partial_fit(x, x.sum(axis=1)), folder / "model.joblib")
    settings = {
        "name": "forecaster",
        "implementation": "driftloop_servers.model_runtime.IncrementalModelRuntime",
        "parameters": {
            "uri": "./model.joblib",
            "version": "1",
            "extra": {"feature_names": FEATURES, "online_learning": True},
        },
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    predictor = {
        "componentSpecs": [
            {"spec": {"containers": [{"name": "forecaster", "image": "seldonio/mlserver:1.7.1"}]}}
        ],
        "graph": {"name": "forecaster", "type": "MODEL"},
    }
    doc = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "online", "namespace": "test"},
        "spec": {
            "protocol": "v2",
            "predictors": [
                {"name": "main", "traffic": 50, **predictor},
                {"name": "canary", "traffic": 50, **predictor},
            ],
        },
    }
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(home))
    runtime = LocalRuntime(
        [Deployment.from_doc(doc)],
        RuntimeSettings(
            models_root=models, run_dir=home / "run", mlserver_env={"PYTHONPATH": str(REPO_ROOT)}
        ),
        MemoryEventLog(),
    )
    try:
        with RuntimeThread(runtime) as thread:
            yield thread
    finally:
        mp.undo()


def predict_on(rt: RuntimeThread, predictor: str, row: list[float]) -> float:
    """The prediction of ``predictor`` (reached with a Seldon-Puid the split sends there)."""
    split = rt.runtime.runtimes[("test", "online")].traffic
    puid = next(p for p in (f"p-{i}" for i in range(1000)) if split.choose(p) == predictor)
    body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP64", "data": row}]}
    r = httpx.post(
        f"{rt.runtime.url(rt.runtime.deployments[0])}/v2/models/infer",
        json=body,
        headers={"seldon-puid": puid},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    [output] = [o for o in r.json()["outputs"] if o["name"] == "prediction"]
    return float(output["data"][0])


def test_every_predictor_learns_each_label_in_place_and_predicts_differently_after(
    online_canary: RuntimeThread,
) -> None:
    row = [0.8, 0.3]
    before = {p: predict_on(online_canary, p, row) for p in ("main", "canary")}
    assert before["main"] == before["canary"]  # the same model, loaded twice
    rows = 20
    label = {
        "inputs": [
            {"name": "features", "shape": [rows, 2], "datatype": "FP64", "data": row * rows},
            {"name": "truth", "shape": [rows], "datatype": "FP64", "data": [25.0] * rows},
        ]
    }
    url = f"{online_canary.runtime.url(online_canary.runtime.deployments[0])}/v2/models/forecaster/learn"
    r = httpx.post(url, json=label, timeout=30)
    assert r.status_code == 200, r.text
    nodes = r.json()["nodes"]
    assert [(n["predictor"], n["node"], n["learned"]) for n in nodes] == [
        ("main", "forecaster", rows),
        ("canary", "forecaster", rows),
    ]
    seen = {n["predictor"]: n["samples_seen"] for n in nodes}
    after = {p: predict_on(online_canary, p, row) for p in ("main", "canary")}
    for predictor in ("main", "canary"):  # both copies moved toward the label
        assert after[predictor] > before[predictor] + 1.0, (predictor, before, after)
    r = httpx.post(url.replace("/forecaster/learn", "/learn"), json=label, timeout=30)  # every MODEL node
    assert r.status_code == 200, r.text
    assert {n["predictor"]: n["samples_seen"] for n in r.json()["nodes"]} == {p: seen[p] + rows for p in seen}
    bad = {"inputs": [label["inputs"][0], {**label["inputs"][1], "shape": [1], "data": [25.0]}]}
    r = httpx.post(url, json=bad, timeout=30)  # the model's own 4xx reaches the client
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["code"] == "node_refused"
    assert "graph node 'forecaster' of predictor 'main' refused the learn call: " in r.json()["error"]
