"""The echo split deployment (main 90 / canary 10) logging to a real Kafka broker: the 10k-request
split, Seldon-Skip-Logging, lossless logging under a burst, and tritonclient on the ingress path."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton

from driftloop.seldon_log import HEADER_NAMES, TYPE_REQUEST, TYPE_RESPONSE, parse_event
from tests.fixtures.kafka import quick_kafka_settings
from tests.graphs.load import REQUEST, fire, metric_value
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration
SKIP = {"Seldon-Skip-Logging": "true"}


def infer_url(rt: RuntimeThread) -> str:
    return rt.runtime.url(rt.runtime.deployments[0]) + "/v2/models/infer"


def served_by(body: bytes) -> str:
    outputs = {o["name"]: o for o in orjson.loads(body)["outputs"]}
    return str(outputs["seen_by_echo_model"]["data"][0]).removeprefix("echo://")


def topic_of(rt: RuntimeThread) -> str:
    return rt.runtime.deployments[0].predictors[0].log_topic


def metrics(rt: RuntimeThread) -> str:
    return httpx.get(f"http://127.0.0.1:{rt.runtime.port}/metrics").text


@pytest.mark.timeout(900)  # 10k real requests; minutes when other work shares the 2 cores
def test_10k_requests_split_within_binomial_tolerance_stable_per_puid(echo_split: RuntimeThread) -> None:
    n = 10_000
    skip = {"Seldon-Skip-Logging": "true"}
    outcomes = asyncio.run(fire(infer_url(echo_split), n, concurrency=32, prefix="split", headers=skip))
    assert [o for o in outcomes if o.status != 200] == []
    canary = sum(served_by(o.body) == "canary" for o in outcomes)
    assert abs(canary - n * 0.1) <= 4 * math.sqrt(n * 0.1 * 0.9), canary
    again = asyncio.run(fire(infer_url(echo_split), 500, prefix="split", headers=skip))
    assert [served_by(o.body) for o in again] == [served_by(o.body) for o in outcomes[:500]]
    text = metrics(echo_split)
    assert metric_value(
        text, "driftloop_ingress_requests_total", predictor="canary", code="200"
    ) == canary + sum(served_by(o.body) == "canary" for o in again)
    # Seldon-Skip-Logging honoured: nothing logged, and both events of every request counted as skipped
    for outcome in ("written", "sampled", "dropped", "failed"):
        assert metric_value(text, "driftloop_request_log_events_total", outcome=outcome) == 0
    skipped = metric_value(text, "driftloop_request_log_events_total", outcome="skipped")
    assert skipped == 2 * (n + len(again))


def _skipped_events(rt: RuntimeThread) -> float:
    return metric_value(metrics(rt), "driftloop_request_log_events_total", outcome="skipped")


def _consume(rt: RuntimeThread, group: str, want: int, timeout_s: float = 60) -> list:
    from driftloop.eventlog.kafka import KafkaEventLog

    log = KafkaEventLog(rt.runtime.event_log.bootstrap_servers, quick_kafka_settings())  # type: ignore[union-attr]
    consumer = log.consumer(group, [topic_of(rt)])
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < want and time.monotonic() < deadline:
            records.extend(consumer.poll(timeout_s=1.0, max_records=5000))
        records.extend(consumer.poll(timeout_s=1.0, max_records=5000))  # anything beyond `want` shows up too
    finally:
        consumer.close()
        log.close()
    return records


def test_burst_at_twice_the_sustained_rate_loses_no_log_event(echo_split: RuntimeThread) -> None:
    """Sustained 100 req/s, then a burst at 200 req/s, against a 64-event log queue with the block
    policy: every event reaches Kafka, in Seldon's format, and nothing is dropped or sampled."""
    url = infer_url(echo_split)
    sustained = asyncio.run(fire(url, 300, concurrency=64, rate_per_s=100, prefix="sustained"))
    burst = asyncio.run(fire(url, 600, concurrency=64, rate_per_s=200, prefix="burst"))
    outcomes = sustained + burst
    assert [o for o in outcomes if o.status != 200] == []
    echo_split.call(echo_split.runtime.request_logger.drain())  # type: ignore[union-attr]
    expected = 2 * len(outcomes)  # one node with logger mode all: request + response per call
    records = _consume(echo_split, "test-burst", expected)
    puids = {o.puid for o in outcomes}
    mine = [r for r in records if (r.header("requestid") or b"").decode() in puids]
    assert len(mine) == expected
    assert len({(r.header("requestid"), r.header("type")) for r in mine}) == expected  # no duplicates
    for record in mine:
        assert record.key is None
        assert tuple(name for name, _ in record.headers) == HEADER_NAMES
        event = parse_event(record.headers, record.value)
        assert (event.model_id, event.deployment, event.namespace, event.protocol) == (
            "echo-model",
            "echo-split",
            "test",
            "v2",
        )
        assert event.endpoint in {"main", "canary"}
    text = metrics(echo_split)
    assert metric_value(text, "driftloop_request_log_events_total", outcome="dropped") == 0
    assert metric_value(text, "driftloop_request_log_events_total", outcome="sampled") == 0
    assert metric_value(text, "driftloop_request_log_events_total", outcome="written") >= expected


def test_tritonclient_http_works_against_the_ingress_path(echo_split: RuntimeThread) -> None:
    rt = echo_split.runtime
    prefix = rt.url(rt.deployments[0]).removeprefix("http://")  # 127.0.0.1:<port>/seldon/test/echo-split
    client = triton.InferenceServerClient(url=prefix)
    try:
        assert client.is_server_ready()
        assert client.is_model_ready("echo-model")
        x = triton.InferInput("x", [1, 2], "FP64")
        # JSON tensors: MLServer (directly or behind the ingress) does not speak Triton's binary extension
        x.set_data_from_numpy(np.array([[1.5, 2.5]]), binary_data=False)
        result = client.infer("echo-model", [x], headers={"Seldon-Puid": "triton-1"})
        assert result.as_numpy("x").tolist() == [[1.5, 2.5]]
        seen = result.as_numpy("seen_by_echo_model")[0]
        assert (seen.decode() if isinstance(seen, bytes) else seen) in {"echo://main", "echo://canary"}
        assert client.get_model_metadata("echo-model")["name"] == "echo-model"
    finally:
        client.close()


def test_one_node_calls_are_answered_from_callbacks_with_the_same_answers_and_events(
    echo_split: RuntimeThread,
) -> None:
    """A one-node graph on a warm connection is answered without a coroutine (``Ingress.fast``): with
    the coroutine path made to fail, calls still succeed, echo their puid, pass a node's error through,
    and log a request and a response event each in Seldon's format."""
    rt = echo_split.runtime
    url = infer_url(echo_split)
    executors = [e for runtime in rt.runtimes.values() for e in runtime.executors.values()]
    bad = {"inputs": [{"name": "fail", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    with httpx.Client() as client:
        seen: set[str] = set()
        for i in range(200):  # warm an idle connection to each predictor's MLServer
            seen.add(served_by(client.post(url, json=REQUEST, headers={"Seldon-Puid": f"warm-{i}"}).content))
            if seen == {"main", "canary"}:
                break

        def coroutine_path(*args: object, **kwargs: object) -> None:
            raise AssertionError("the coroutine path answered")

        for executor in executors:
            executor.predict = coroutine_path  # type: ignore[method-assign]
        try:
            puids = [f"fast-{i}" for i in range(30)]
            answers = [client.post(url, json=REQUEST, headers={"Seldon-Puid": p}) for p in puids]
            failed = client.post(url, json=bad, headers={"Seldon-Puid": "fast-bad"})
            skipped_before = _skipped_events(echo_split)
            skipped = client.post(url, json=REQUEST, headers={"Seldon-Puid": "fast-quiet", **SKIP})
            skipped_after = _skipped_events(echo_split)
        finally:
            for executor in executors:
                del executor.predict  # type: ignore[method-assign]
    assert [(a.status_code, a.headers["Seldon-Puid"]) for a in answers] == [(200, p) for p in puids]
    assert {served_by(a.content) for a in answers} <= {"main", "canary"}
    assert failed.status_code == 422 and "input tensor 'fail'" in failed.json()["error"]
    assert skipped.status_code == 200
    assert skipped_after - skipped_before == 2  # its request and response events, counted, not logged
    echo_split.call(rt.request_logger.drain())  # type: ignore[union-attr]
    records = [
        r
        for r in _consume(echo_split, "test-fast", 2 * len(puids) + 1)
        if (r.header("requestid") or b"").startswith(b"fast-")
    ]
    logged = {((r.header("requestid") or b"").decode(), (r.header("type") or b"").decode()) for r in records}
    assert logged == {(p, t) for p in puids for t in (TYPE_REQUEST, TYPE_RESPONSE)} | {
        ("fast-bad", TYPE_REQUEST)  # a failed call logs its request only, as Seldon's executor does
    }
    assert all(tuple(name for name, _ in r.headers) == HEADER_NAMES for r in records)
