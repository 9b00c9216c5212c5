"""``POST .../v2/models[/<model>]/learn`` through the local runtime to real MLServer processes."""

from __future__ import annotations

import httpx
import pytest

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
