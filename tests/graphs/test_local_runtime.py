"""The echo canary manifest (main 90 / canary 10 / shadow) on real MLServer processes behind the
real ingress: executor semantics, errors, the split, the shadow, logging, and live changes."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import orjson
import pytest

from driftloop.seldon_log import parse_event
from tests.graphs.load import REQUEST, fire, metric_value
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration


def base_url(rt: RuntimeThread) -> str:
    return rt.runtime.url(rt.runtime.deployments[0])


def metrics(rt: RuntimeThread) -> str:
    return httpx.get(f"http://127.0.0.1:{rt.runtime.port}/metrics").text


def served_by(body: bytes) -> str:
    outputs = {o["name"]: o for o in orjson.loads(body)["outputs"]}
    return str(outputs["seen_by_echo_model"]["data"][0]).removeprefix("echo://")


def test_start_up_is_reported_and_within_target(echo_canary: RuntimeThread) -> None:
    assert 0 < echo_canary.startup_s <= 10  # target 10 s; forked from one zygote: ~1 s on 2 quiet cores
    assert httpx.get(f"{base_url(echo_canary)}/v2/health/ready").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{echo_canary.runtime.port}/ready").status_code == 200


def test_chain_renames_outputs_to_inputs_keeping_other_keys_and_echoes_puid(
    echo_canary: RuntimeThread,
) -> None:
    r = httpx.post(f"{base_url(echo_canary)}/v2/models/infer", json=REQUEST, headers={"Seldon-Puid": "p-1"})
    assert r.status_code == 200, r.text
    assert r.headers["Seldon-Puid"] == "p-1"
    body = r.json()
    names = [o["name"] for o in body["outputs"]]
    assert names == ["x", "seen_by_echo_in", "seen_by_echo_model"]  # node 2 got node 1's outputs as inputs
    assert body["parameters"]["via_echo_in"] is True  # node 1's response parameters reached node 2
    assert body["model_name"] == "echo-model"
    generated = httpx.post(f"{base_url(echo_canary)}/v2/models/infer", json=REQUEST).headers["Seldon-Puid"]
    assert len(generated) == 36  # a UUID when the client sends none


def test_node_errors_come_back_with_the_nodes_status_and_json(echo_canary: RuntimeThread) -> None:
    url = base_url(echo_canary)
    bad = {"inputs": [{"name": "fail", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    r = httpx.post(f"{url}/v2/models/infer", json=bad, headers={"Seldon-Puid": "bad-1"})
    assert r.status_code == 422 and "input tensor 'fail'" in r.json()["error"]
    assert r.headers["Seldon-Puid"] == "bad-1"
    r = httpx.post(f"{url}/v2/models/echo-model/infer", json=REQUEST)
    assert r.status_code == 404 and "serves only model 'echo-in'" in r.json()["error"]
    r = httpx.post(f"{url}/v2/models/echo-in/infer", json={"inputs": "nope"})
    assert r.status_code == 422, r.text  # MLServer's own validation error, passed through as JSON
    assert "error" in r.json() or "detail" in r.json()
    assert httpx.post(f"{url}/v2/models/infer", content=b"").status_code == 400
    r = httpx.post(
        f"http://127.0.0.1:{echo_canary.runtime.port}/seldon/test/nope/v2/models/infer", json=REQUEST
    )
    assert r.status_code == 404 and "test/echo" in r.json()["error"]
    text = metrics(echo_canary)
    assert metric_value(text, "driftloop_ingress_errors_total", node="echo-in", reason="status_422") >= 1


def test_model_readiness_and_metadata_reach_the_node(echo_canary: RuntimeThread) -> None:
    url = base_url(echo_canary)
    assert httpx.get(f"{url}/v2/models/echo-model/ready").status_code == 200
    assert httpx.get(f"{url}/v2/models/echo-in").json()["name"] == "echo-in"
    r = httpx.get(f"{url}/v2/models/unknown/ready")
    assert r.status_code == 404 and "echo-in" in r.json()["error"]


def test_wrong_routes_methods_and_sizes_get_json_errors(echo_canary: RuntimeThread) -> None:
    url = base_url(echo_canary)
    r = httpx.get(f"{url}/v2/models/infer")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "use POST" in r.json()["error"]
    r = httpx.post(f"{url}/v2/health/ready")
    assert r.status_code == 405 and "use GET" in r.json()["error"]
    r = httpx.get(f"http://127.0.0.1:{echo_canary.runtime.port}/v1/predictions")
    assert r.status_code == 404 and "/seldon/<namespace>/<name>/v2/models/infer" in r.json()["error"]
    limit = echo_canary.runtime.settings.max_body_bytes
    r = httpx.post(f"{url}/v2/models/infer", content=b"x" * (limit + 1))
    assert r.status_code == 413 and f"limit of {limit} bytes" in r.json()["error"]
    r = httpx.post(f"{url}/v2/models/infer", json=REQUEST)  # a new connection serves again
    assert r.status_code == 200


def test_the_shadow_gets_a_mirror_of_every_request(echo_canary: RuntimeThread) -> None:
    shadow_before = metric_value(metrics(echo_canary), "driftloop_shadow_requests_total", outcome="ok")
    n = 400
    url = f"{base_url(echo_canary)}/v2/models/infer"
    outcomes = asyncio.run(
        fire(url, n, concurrency=32, prefix="mirror", headers={"Seldon-Skip-Logging": "true"})
    )
    assert [o for o in outcomes if o.status != 200] == []
    assert {served_by(o.body) for o in outcomes} <= {"main", "canary"}  # never the shadow's answer
    deadline = time.monotonic() + 60
    shadow = shadow_before
    while time.monotonic() < deadline and shadow - shadow_before < n:
        time.sleep(0.2)
        shadow = metric_value(metrics(echo_canary), "driftloop_shadow_requests_total", outcome="ok")
    assert shadow - shadow_before == n


def test_logged_events_are_seldons_and_the_shadow_logs_as_itself(echo_canary: RuntimeThread) -> None:
    log = echo_canary.runtime.event_log
    assert log is not None
    puids = [f"logged-{i}" for i in range(5)]
    answers = {}
    for puid in puids:
        r = httpx.post(
            f"{base_url(echo_canary)}/v2/models/infer", json=REQUEST, headers={"Seldon-Puid": puid}
        )
        answers[puid] = served_by(r.content)
    time.sleep(0.5)  # let the shadow mirrors finish
    echo_canary.call(echo_canary.runtime.request_logger.drain())  # type: ignore[union-attr]
    consumer = log.consumer("test-logged", ["seldon-test"])
    records = []
    for _ in range(20):
        records.extend(consumer.poll(timeout_s=0.2, max_records=100_000))
    consumer.close()
    mine = [r for r in records if (r.header("requestid") or b"").decode() in puids]
    assert len(mine) == 5 * 8  # per call: 2 nodes x (request + response) x (serving + shadow predictor)
    for record in mine:
        assert record.key is None
        assert [name for name, _ in record.headers] == [
            "type",
            "content-type",
            "modelid",
            "requestid",
            "inferenceservicename",
            "namespace",
            "endpoint",
            "protocol",
        ]
        event = parse_event(record.headers, record.value)
        assert (event.deployment, event.namespace, event.protocol) == ("echo", "test", "v2")
        assert event.content_type == "application/json"
        assert event.endpoint in {"main", "canary", "shadow"}
    for puid in puids:
        events = [parse_event(r.headers, r.value) for r in mine if r.header("requestid") == puid.encode()]
        serving = {e.endpoint for e in events} - {"shadow"}
        assert serving == {"main" if answers[puid] == "main" else "canary"}
        first = next(e for e in events if e.model_id == "echo-in" and e.type.endswith("request"))
        assert orjson.loads(first.payload) == REQUEST  # the client's request, raw
        second = next(
            e
            for e in events
            if e.model_id == "echo-model" and e.type.endswith("request") and e.endpoint != "shadow"
        )
        assert "outputs" in orjson.loads(second.payload)  # Seldon logs the message before the rename


def test_traffic_and_version_changes_under_load_fail_no_request(echo_canary: RuntimeThread) -> None:
    from driftloop_graphs.control_client import ControlClient, ControlRequestError

    rt = echo_canary.runtime
    client = ControlClient(f"http://127.0.0.1:{rt.control_port}", rt.token)
    results: list = []

    def load() -> None:
        results.extend(
            asyncio.run(
                fire(
                    f"{base_url(echo_canary)}/v2/models/infer",
                    1200,
                    concurrency=16,
                    rate_per_s=200,
                    prefix="live",
                    headers={"Seldon-Skip-Logging": "true"},
                )
            )
        )

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    assert client.set_traffic("test", "echo", {"main": 50, "canary": 50})["predictors"][1]["traffic"] == 50
    time.sleep(1.0)
    state = client.set_model("test", "echo", "canary", "echo-model", "echo://canary-v2")
    assert state["predictors"][1]["nodes"]["echo-model"] == "echo://canary-v2"
    time.sleep(1.0)
    with pytest.raises(ControlRequestError, match="must sum to 100, got 120"):
        client.set_traffic("test", "echo", {"main": 70, "canary": 50})
    client.set_traffic("test", "echo", {"main": 90, "canary": 10})
    thread.join(60)
    assert len(results) == 1200
    assert [o for o in results if o.status != 200] == []
    served = [served_by(o.body) for o in results]
    assert "canary-v2" in served and "canary" in served and "main" in served
    r = httpx.get(
        f"http://127.0.0.1:{rt.control_port}/v1/deployments", headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401
    client.close()
