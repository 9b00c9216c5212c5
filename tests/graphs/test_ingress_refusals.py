"""The ingress on a real MLServer (one logged node, the callback path): what it refuses before a node
sees it, the limits it applies, how a node's failure reaches the client, and one client's bad request
never failing another's. Each refusal is a 4xx in the one error shape, counted in the metrics."""

from __future__ import annotations

import asyncio
import gzip
import socket

import httpx
import orjson
import pytest

from tests.graphs.load import REQUEST, metric_value
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


def infer_url(rt: RuntimeThread) -> str:
    return f"{rt.runtime.url(rt.runtime.deployments[0])}/v2/models/infer"


def metrics(rt: RuntimeThread) -> str:
    return httpx.get(f"http://127.0.0.1:{rt.runtime.port}/metrics").text


def error_of(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"error", "code"}, body
    assert "Traceback" not in body["error"]
    return body["code"], body["error"]


def features(rows: int, assets: int | None = None) -> dict[str, object]:
    inputs: list[dict[str, object]] = [
        {"name": "features", "shape": [rows, 2], "datatype": "FP64", "data": [1.0] * (2 * rows)}
    ]
    if assets is not None:
        inputs.append({"name": "asset_id", "shape": [assets], "datatype": "BYTES", "data": ["p"] * assets})
    return {"inputs": inputs}


def test_bodies_mlserver_cannot_take_are_refused_with_a_4xx_saying_why(echo_single: RuntimeThread) -> None:
    url = infer_url(echo_single)
    r = httpx.post(url, content=b"\xff", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and error_of(r)[0] == "unsupported_media_type"
    r = httpx.post(url, content=b"\xff", headers=JSON)
    assert r.status_code == 400 and "not UTF-8 JSON" in error_of(r)[1]
    secret = b'{"inputs": [], "secret": "do-not-echo-me"}'
    r = httpx.post(url, content=secret, headers={"content-type": "text/plain"})
    assert r.status_code == 415 and b"do-not-echo-me" not in r.content
    for bad_id in ("caf\u00e9 \u2603", "line\nbreak", "tab\there"):
        r = httpx.post(url, json={**REQUEST, "id": bad_id})
        assert r.status_code == 422 and "'id'" in error_of(r)[1], bad_id
    for shape in (["1", "2"], [True, 2], [-1, 2], [1.0, 2]):
        tensor = {"name": "x", "shape": shape, "datatype": "FP64", "data": [1.0, 2.0]}
        r = httpx.post(url, json={"inputs": [tensor]})
        assert r.status_code == 422 and "non-negative integers" in error_of(r)[1], shape
    r = httpx.post(url, json={"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0]}]})
    assert r.status_code == 422 and "holds 3 element(s) but 'data' has 1" in error_of(r)[1]
    r = httpx.post(url, json=features(2, assets=3))
    assert r.status_code == 422 and "'asset_id' has 3 row(s) and 'features' 2" in error_of(r)[1]
    assert httpx.post(url, json=features(2, assets=2)).status_code == 200


def test_compressed_bodies_are_refused_with_415(echo_single: RuntimeThread) -> None:
    r = httpx.post(
        infer_url(echo_single),
        content=gzip.compress(orjson.dumps(REQUEST)),
        headers={**JSON, "content-encoding": "gzip"},
    )
    assert r.status_code == 415 and error_of(r)[0] == "unsupported_encoding"


def test_rows_over_the_cap_are_refused_naming_the_cap_and_how_to_change_it(
    echo_single: RuntimeThread,
) -> None:
    url = infer_url(echo_single)
    cap = echo_single.runtime.settings.limits.max_rows
    r = httpx.post(url, json=features(cap + 1))
    code, message = error_of(r)
    assert r.status_code == 422 and code == "too_many_rows"
    assert f"at most {cap} rows" in message and "DRIFTLOOP_INGRESS_MAX_ROWS" in message
    assert httpx.post(url, json=features(cap)).status_code == 200


def test_a_body_over_the_logs_record_limit_is_refused_up_front(echo_single: RuntimeThread) -> None:
    limit = echo_single.runtime.settings.limits.max_logged_body_bytes
    before = metric_value(metrics(echo_single), "driftloop_request_log_events_total", outcome="failed")
    big = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * limit]}]}
    r = httpx.post(infer_url(echo_single), json=big)
    code, message = error_of(r)
    assert r.status_code == 413 and code == "too_large_to_log" and str(limit) in message
    assert (
        metric_value(metrics(echo_single), "driftloop_request_log_events_total", outcome="failed") == before
    )


def test_seldon_puid_is_bounded_and_never_echoed_when_refused(echo_single: RuntimeThread) -> None:
    url = infer_url(echo_single)
    r = httpx.post(url, json=REQUEST, headers={"seldon-puid": "p" * 129})
    assert r.status_code == 400 and "limit is 128" in error_of(r)[1] and "seldon-puid" not in r.headers
    r = httpx.post(url, json=REQUEST, headers={"seldon-puid": "a b<script>"})
    assert r.status_code == 400 and error_of(r)[0] == "bad_puid"
    ok = httpx.post(url, json=REQUEST, headers={"seldon-puid": "p" * 128})
    assert ok.status_code == 200 and ok.headers["seldon-puid"] == "p" * 128


def test_refusals_are_counted_empty_bodies_in_requests_total_too(echo_single: RuntimeThread) -> None:
    labels = {"deployment": "echo-single", "predictor": "main", "code": "400"}
    before = metrics(echo_single)
    assert httpx.post(infer_url(echo_single), content=b"", headers=JSON).status_code == 400
    assert (
        httpx.post(infer_url(echo_single), json=REQUEST, headers={"seldon-puid": "x" * 200}).status_code
        == 400
    )
    after = metrics(echo_single)
    requests = "driftloop_ingress_requests_total"
    assert metric_value(after, requests, **labels) == metric_value(before, requests, **labels) + 2
    refused = "driftloop_ingress_refused_total"
    for code in ("empty_body", "bad_puid"):
        assert metric_value(after, refused, code=code) == metric_value(before, refused, code=code) + 1


def raw_exchange(port: int, data: bytes, read_timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_too_many_or_too_large_headers_are_431(echo_single: RuntimeThread) -> None:
    port = echo_single.runtime.port
    limits = echo_single.runtime.settings.limits
    path = echo_single.runtime.url(echo_single.runtime.deployments[0]).split(str(port), 1)[1]
    body = orjson.dumps(REQUEST)
    before = metric_value(metrics(echo_single), "driftloop_ingress_refused_total", code="headers_too_large")
    many = "".join(f"x-h{i}: v\r\n" for i in range(limits.max_header_count + 1))
    big = f"x-big: {'v' * limits.max_header_bytes}\r\n"
    for extra in (many, big):
        head = f"POST {path}/v2/models/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        request = f"{head}{extra}content-length: {len(body)}\r\n\r\n".encode() + body
        answer = raw_exchange(port, request)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "headers_too_large"
    after = metric_value(metrics(echo_single), "driftloop_ingress_refused_total", code="headers_too_large")
    assert after == before + 2


def test_a_node_crash_is_a_502_naming_the_node_without_internals(echo_single: RuntimeThread) -> None:
    crash = {"inputs": [{"name": "crash", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    r = httpx.post(infer_url(echo_single), json=crash)
    code, message = error_of(r)
    assert r.status_code == 502 and code == "node_error"
    assert "'echo-model'" in message and "bug in the model runtime" not in message


def test_one_clients_crashing_requests_never_fail_anothers(echo_single: RuntimeThread) -> None:
    """MLServer closes a connection after a 500; the ingress must not hand it to the next request."""
    url = infer_url(echo_single)
    crash = {"inputs": [{"name": "crash", "shape": [1], "datatype": "FP64", "data": [1.0]}]}

    async def client(alternate: bool) -> list[int]:
        statuses = []
        async with httpx.AsyncClient(timeout=30) as http:
            for i in range(60):
                bad = alternate and i % 2 == 0
                r = await http.post(url, json=crash if bad else REQUEST)
                if not bad:
                    statuses.append(r.status_code)
        return statuses

    async def both() -> list[list[int]]:
        return list(await asyncio.gather(client(True), client(False)))

    mixed, clean = asyncio.run(both())
    assert mixed == [200] * 30 and clean == [200] * 60
