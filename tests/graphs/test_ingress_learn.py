"""``POST .../v2/models[/<model>]/learn`` through the real ingress over real HTTP: the body reaches the
node's learn route, unchanged, in every predictor; a node's 4xx passes through with its message; a
node's 5xx or a dead node is 502 with nothing of its internals; the ingress refuses what it refuses for
inference; learn calls never reach the request log; everything counted.

Each predictor's MLServer is a stand-in here (a real HTTP server on 127.0.0.1 answering what a node
would), so every answer a node can give is reachable; ``test_ingress_learn_mlserver`` runs the same
route against real MLServer processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from driftloop_graphs.executor import PredictorExecutor
from driftloop_graphs.http_server import HttpServer
from driftloop_graphs.ingress import DeploymentRuntime, Ingress
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.request_log import RequestLogger, RequestLogSettings
from driftloop_graphs.runtime import bind
from driftloop_graphs.spec import Deployment
from driftloop_graphs.traffic import TrafficTable
from driftloop_graphs.upstream import UpstreamPool

from driftloop.eventlog import MemoryEventLog
from tests.graphs.load import metric_value

pytestmark = pytest.mark.integration

# main 90 / canary 10 / shadow; each predictor: echo-in (TRANSFORMER) -> echo-model (MODEL), all logged
ECHO_CANARY = Path(__file__).parent / "manifests" / "echo-canary.yaml"
LEARN = "/v2/models/echo-model/learn"
BODY = (
    b'{"id": "lbl-7", "inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP64", '
    b'"data": [1.0, 2.0, 3.0, 4.0]}, {"name": "truth", "shape": [2], "datatype": "FP64", "data": [0, 1]}]}'
)
V2_OUTPUT = (
    b'{"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "FP64", "data": [1.0]}]}'
)


def learned(version: str, learned: int = 2, seen: int = 10) -> tuple[int, bytes]:
    body = {"model_name": "echo-model", "model_version": version, "learned": learned, "samples_seen": seen}
    return 200, orjson.dumps(body)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class NodeStandIn:
    """A predictor's MLServer: answers each path from ``answers`` (else MLServer's 404), keeps
    connections alive, records every request."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *lines = head.split("\r\n")
                method, path, _ = line.split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(method, path, headers, body))
                status, answer = self.answers.get(path, (404, b'{"detail":"Not Found"}'))
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (status, len(answer), answer)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.wait_for(asyncio.gather(*self.handlers), 10)  # each ends at its connection's end
        await self.server.wait_closed()
        self.server = None

    def learn_calls(self) -> list[Received]:
        return [r for r in self.received if r.path.endswith("/learn")]


@dataclass
class Harness:
    url: str  # the deployment's ingress prefix: http://127.0.0.1:<port>/seldon/test/echo
    port: int
    nodes: dict[str, NodeStandIn]  # by predictor
    log: MemoryEventLog
    request_logger: RequestLogger
    runtime: DeploymentRuntime
    client: httpx.AsyncClient

    async def metrics(self) -> str:
        return (await self.client.get(f"http://127.0.0.1:{self.port}/metrics")).text


@pytest.fixture
async def ingress() -> AsyncIterator[Harness]:
    """The real ingress (``Ingress`` on its HTTP server, the fast path on, as ``LocalRuntime`` runs it)
    for the echo canary deployment, each predictor's MLServer a stand-in, logging to a memory log."""
    deployment = Deployment.from_doc(load_manifests(ECHO_CANARY)[0])
    nodes = {p.name: NodeStandIn() for p in deployment.predictors}
    urls = {name: await node.start() for name, node in nodes.items()}
    metrics, pool, log = IngressMetrics(), UpstreamPool(keepalive_expiry_s=2.0), MemoryEventLog()
    for predictor in deployment.predictors:
        log.create_topic(predictor.log_topic)
    request_logger = RequestLogger(log.producer(), metrics, RequestLogSettings(), log.partitions_for)
    request_logger.start()
    executors = {
        p.name: PredictorExecutor(deployment, p, urls[p.name], pool, metrics, request_logger)
        for p in deployment.predictors
    }
    main = [p.name for p in deployment.main_predictors]
    traffic = TrafficTable.build({p.name: p.traffic for p in deployment.main_predictors}, main)
    runtime = DeploymentRuntime(deployment, {n: executors[n] for n in main}, traffic, executors["shadow"])
    ingress = Ingress({(deployment.namespace, deployment.name): runtime}, metrics, request_logger)
    server = HttpServer(ingress.handle, fast=ingress.fast, **ingress.server_options())
    sock = bind("127.0.0.1", 0)
    await server.start(sock)
    port = int(sock.getsockname()[1])
    client = httpx.AsyncClient(timeout=30)
    try:
        url = f"http://127.0.0.1:{port}/seldon/test/echo"
        yield Harness(url, port, nodes, log, request_logger, runtime, client)
    finally:
        await client.aclose()
        await server.stop(timeout_s=5)
        if runtime.shadow_tasks:
            await asyncio.wait(list(runtime.shadow_tasks), timeout=10)
        await request_logger.close()
        await pool.aclose()
        for node in nodes.values():
            await node.stop()


def error_of(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert set(body) == {"error", "code"}, body
    return body["code"], body["error"]


async def test_a_learn_call_reaches_the_node_in_every_predictor_with_the_body_unchanged(
    ingress: Harness,
) -> None:
    for name, node in ingress.nodes.items():
        node.answers[LEARN] = learned(
            f"v-{name}", learned=2, seen={"main": 10, "canary": 4, "shadow": 7}[name]
        )
    content_type = "application/json; charset=utf-8"
    r = await ingress.client.post(
        f"{ingress.url}{LEARN}", content=BODY, headers={"content-type": content_type}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "nodes": [
            {
                "predictor": "main",
                "node": "echo-model",
                "learned": 2,
                "samples_seen": 10,
                "model_version": "v-main",
            },
            {
                "predictor": "canary",
                "node": "echo-model",
                "learned": 2,
                "samples_seen": 4,
                "model_version": "v-canary",
            },
            {
                "predictor": "shadow",
                "node": "echo-model",
                "learned": 2,
                "samples_seen": 7,
                "model_version": "v-shadow",
            },
        ]
    }
    for node in ingress.nodes.values():
        [call] = node.received  # the learn route only: no inference, no other node
        assert (call.method, call.path, call.body) == ("POST", LEARN, BODY)
        assert call.headers["content-type"] == content_type
    text = await ingress.metrics()
    assert metric_value(text, "driftloop_ingress_learn_total", deployment="echo", outcome="ok") == 1
    for predictor in ("main", "canary", "shadow"):
        rows = metric_value(
            text, "driftloop_ingress_learned_rows_total", predictor=predictor, node="echo-model"
        )
        assert rows == 2
    assert metric_value(text, "driftloop_ingress_requests_total") == 0  # not an inference request


async def test_without_a_model_in_the_path_every_model_node_learns(ingress: Harness) -> None:
    for name, node in ingress.nodes.items():
        node.answers[LEARN] = learned(f"v-{name}")
    r = await ingress.client.post(f"{ingress.url}/v2/models/learn", content=BODY)
    assert r.status_code == 200, r.text
    assert [(n["predictor"], n["node"]) for n in r.json()["nodes"]] == [
        ("main", "echo-model"),
        ("canary", "echo-model"),
        ("shadow", "echo-model"),
    ]
    for node in ingress.nodes.values():  # echo-in is a TRANSFORMER: it is not asked to learn
        assert [c.path for c in node.received] == [LEARN]


async def test_a_node_that_refuses_passes_its_4xx_and_message_through_naming_it(ingress: Harness) -> None:
    ingress.nodes["main"].answers[LEARN] = learned("v-main")
    ingress.nodes["shadow"].answers[LEARN] = learned("v-shadow")
    ingress.nodes["canary"].answers[LEARN] = (
        409,
        b'{"error": "online learning is off for model echo-model: set parameters.extra.online_learning"}',
    )
    r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
    assert r.status_code == 409
    code, message = error_of(r)
    assert code == "node_refused"
    assert "graph node 'echo-model' of predictor 'canary' refused the learn call" in message
    assert "online learning is off for model echo-model: set parameters.extra.online_learning" in message
    assert "learned meanwhile by main/echo-model, shadow/echo-model" in message
    # FastAPI's {"detail": [...]} (a body MLServer's route could not parse) is read too
    ingress.nodes["canary"].answers[LEARN] = (
        422,
        b'{"detail": [{"loc": ["body", "inputs"], "msg": "Field required", "type": "missing"}]}',
    )
    r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
    assert r.status_code == 422 and "body.inputs: Field required" in error_of(r)[1]
    text = await ingress.metrics()
    assert metric_value(text, "driftloop_ingress_learn_total", outcome="node_refused") == 2
    assert metric_value(text, "driftloop_ingress_learned_rows_total", predictor="main") == 4
    assert metric_value(text, "driftloop_ingress_learned_rows_total", predictor="canary") == 0


async def test_a_node_that_fails_is_502_naming_it_and_nothing_of_its_internals(ingress: Harness) -> None:
    ingress.nodes["main"].answers[LEARN] = learned("v-main")
    ingress.nodes["shadow"].answers[LEARN] = learned("v-shadow")
    ingress.nodes["canary"].answers[LEARN] = (
        500,
        b'{"error": "Traceback (most recent call last): secret.py"}',
    )
    r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
    assert r.status_code == 502
    code, message = error_of(r)
    assert code == "node_error"
    assert "graph node 'echo-model' of predictor 'canary' failed the learn call" in message
    assert "Traceback" not in r.text and "secret" not in r.text
    # a 2xx the ingress cannot read is a 502 too, saying the node may have learned
    unreadable = {
        b'{"learned": "two", "samples_seen": 3}': "'learned' is not a non-negative integer",
        b'{"learned": -2, "samples_seen": 3}': "'learned' is not a non-negative integer",
        b'{"learned": 2}': "'samples_seen' is not a non-negative integer",
        b'{"learned": 2, "samples_seen": 3, "model_version": 1}': "'model_version' is not a string",
        b"[]": "it is not a JSON object",
        b"ok": "it is not a JSON object",
    }
    for answer, problem in unreadable.items():
        ingress.nodes["canary"].answers[LEARN] = (200, answer)
        r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
        assert r.status_code == 502, answer
        code, message = error_of(r)
        assert code == "bad_node_response" and problem in message and "it may have learned" in message
    # a refusal wins over a failure: sending the same body again would be refused again
    ingress.nodes["shadow"].answers[LEARN] = (400, b'{"error": "truth has 1 row(s), features 2"}')
    r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
    assert r.status_code == 400
    code, message = error_of(r)
    assert code == "node_refused" and "truth has 1 row(s), features 2" in message
    assert "also failed: canary/echo-model (502 bad_node_response)" in message
    text = await ingress.metrics()
    assert metric_value(text, "driftloop_ingress_learn_total", outcome="node_error") == 1 + len(unreadable)
    assert metric_value(text, "driftloop_ingress_learn_total", outcome="node_refused") == 1


async def test_a_dead_node_is_502_naming_it(ingress: Harness) -> None:
    for name, node in ingress.nodes.items():
        node.answers[LEARN] = learned(f"v-{name}")
    assert (await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)).status_code == 200
    await ingress.nodes["canary"].stop()  # its MLServer is gone: nothing listens on its port
    r = await ingress.client.post(f"{ingress.url}{LEARN}", content=BODY)
    assert r.status_code == 502
    code, message = error_of(r)
    assert code == "node_error"
    assert "graph node 'echo-model' of predictor 'canary' is unreachable" in message
    assert "learned meanwhile by main/echo-model, shadow/echo-model" in message


async def test_learn_calls_are_never_written_to_the_request_log(ingress: Harness) -> None:
    for name, node in ingress.nodes.items():
        node.answers[LEARN] = learned(f"v-{name}")
        node.answers["/v2/models/echo-in/infer"] = (200, V2_OUTPUT)
        node.answers["/v2/models/echo-model/infer"] = (200, V2_OUTPUT)
    for path in (LEARN, "/v2/models/learn"):
        r = await ingress.client.post(
            f"{ingress.url}{path}", content=BODY, headers={"seldon-puid": "learn-1"}
        )
        assert r.status_code == 200, r.text
    # an inference call after them is logged: the log works here, and learn events would precede it
    r = await ingress.client.post(
        f"{ingress.url}/v2/models/infer", content=BODY, headers={"seldon-puid": "infer-1"}
    )
    assert r.status_code == 200, r.text
    if ingress.runtime.shadow_tasks:  # the shadow's mirror, logged too
        await asyncio.wait(list(ingress.runtime.shadow_tasks), timeout=10)
    await ingress.request_logger.drain()
    consumer = ingress.log.consumer("check", ["seldon-test"])
    records = consumer.poll(timeout_s=0, max_records=1000)
    assert records, "the inference call was not logged"
    request_ids = {dict(r.headers)["requestid"] for r in records}
    assert request_ids == {b"infer-1"}
    text = await ingress.metrics()
    assert metric_value(text, "driftloop_request_log_events_total", outcome="written") == len(records)
    assert metric_value(text, "driftloop_request_log_events_total", outcome="skipped") == 0


async def test_the_ingress_refuses_what_it_refuses_for_inference_before_any_node_sees_it(
    ingress: Harness,
) -> None:
    client, url = ingress.client, ingress.url
    r = await client.get(f"{url}{LEARN}")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert error_of(r)[0] == "method_not_allowed"
    r = await client.post(f"{url}/v2/models/no-such-model/learn", content=BODY)
    assert r.status_code == 404
    code, message = error_of(r)
    assert code == "model_not_found" and "no-such-model" in message and "echo-model" in message
    r = await client.post(f"http://127.0.0.1:{ingress.port}/seldon/test/nope/v2/models/learn", content=BODY)
    assert r.status_code == 404 and error_of(r)[0] == "unknown_deployment"
    r = await client.post(f"{url}{LEARN}", content=BODY, headers={"content-type": "text/csv"})
    assert r.status_code == 415 and error_of(r)[0] == "unsupported_media_type"
    r = await client.post(f"{url}{LEARN}", content=BODY, headers={"content-encoding": "gzip"})
    assert r.status_code == 415 and error_of(r)[0] == "unsupported_encoding"
    r = await client.post(f"{url}{LEARN}", content=b"")
    assert r.status_code == 400 and error_of(r)[0] == "empty_body"
    r = await client.post(f"{url}{LEARN}", content=b"{not json")
    assert r.status_code == 400 and error_of(r)[0] == "invalid_json"
    r = await client.post(f"{url}{LEARN}", json={"inputs": []})
    assert r.status_code == 422 and error_of(r)[0] == "invalid_request"
    tensor = {"name": "truth", "shape": [10_001], "datatype": "FP64", "data": [0.0] * 10_001}
    r = await client.post(f"{url}{LEARN}", json={"inputs": [tensor]})
    assert r.status_code == 422 and error_of(r)[0] == "too_many_rows"
    assert all(not node.received for node in ingress.nodes.values())
    text = await ingress.metrics()
    assert metric_value(text, "driftloop_ingress_learn_total", deployment="echo", outcome="refused") == 8
    for code in ("method_not_allowed", "model_not_found", "unknown_deployment", "invalid_request"):
        assert metric_value(text, "driftloop_ingress_refused_total", code=code) >= 1, code
