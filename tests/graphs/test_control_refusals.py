"""The control API on a one-predictor deployment: weights that do not total 100 or are not integers
are refused with a 400 naming the problem (a lone predictor takes 100), and every error answer,
unknown routes and methods included, has the one error shape."""

from __future__ import annotations

import httpx
import pytest

from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration


def control(rt: RuntimeThread) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{rt.runtime.control_port}",
        headers={"Authorization": f"Bearer {rt.runtime.token}"},
    )


def error_of(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"error", "code"}, body
    return body["code"], body["error"]


def test_a_lone_predictors_weights_must_total_100_as_integers(echo_single: RuntimeThread) -> None:
    path = "/v1/deployments/bench/echo-single/traffic"
    with control(echo_single) as client:
        for weights, says in (
            ({"main": 50}, "must sum to 100, got 50"),
            ({}, "must sum to 100, got 0"),
            ({"main": True}, "integers 0..100 (not booleans"),
            ({"main": 100.0}, "integers 0..100"),
            ({"other": 100}, "unknown predictor"),
        ):
            r = client.put(path, json={"traffic": weights})
            assert r.status_code == 400 and says in error_of(r)[1], (weights, r.text)
        r = client.put(path, json={"traffic": {"main": 100}})
        assert r.status_code == 200 and r.json()["predictors"][0]["traffic"] == 100


def test_unknown_routes_and_methods_answer_the_one_error_shape(echo_single: RuntimeThread) -> None:
    with control(echo_single) as client:
        r = client.get("/v1/nowhere")
        assert r.status_code == 404 and error_of(r)[0] == "not_found"
        r = client.delete("/v1/deployments")
        assert r.status_code == 405 and error_of(r)[0] == "method_not_allowed" and "GET" in r.headers["allow"]
        r = client.get("/v1/deployments/bench/missing")
        assert r.status_code == 404 and error_of(r)[0] == "not_found"
        r = client.put("/v1/deployments/bench/echo-single/traffic", content=b"\xff")
        assert r.status_code == 400 and error_of(r)[0] == "bad_request"
    r = httpx.get(f"http://127.0.0.1:{echo_single.runtime.control_port}/v1/deployments")
    assert r.status_code == 401 and error_of(r)[0] == "unauthorized"
