"""The graph executor: what Seldon Core v1's executor does for one predictor with protocol v2.

Per node (recursively, as ``PredictorProcess.Predict``): MODEL / TRANSFORMER nodes are called on the
way in, then the children (all of them concurrently; the first child's answer is kept), then
OUTPUT_TRANSFORMER nodes on the way out. Before a node is called with a previous node's response, the
response's ``outputs`` key is renamed ``inputs``, every other key kept. A request to
``/v2/models/<m>/infer`` calls every node with model name ``<m>``; as on a cluster, where each node's
container serves only its own model, a node asked for another model answers 404.

Logging matches Seldon: a node with ``logger`` logs the message it receives (before the rename) and,
on success, its response, keyed by ``Seldon-Puid``.

Outlier verdicts: when a node's response that is chained into the next node holds an ``outlier_flag``
BOOL tensor (the outlier TRANSFORMER's annotation, ``driftloop_servers.outlier_runtime``), its rows and
true flags are counted once per request in ``driftloop_ingress_scored_rows_total`` /
``driftloop_ingress_outlier_rows_total`` of the predictor, from the message ``chain`` parses anyway.

A node's error answer reaches the client in the runtime's one error shape (``errors.error_body``): a
4xx with the node's status and its message (MLServer's ``{"error"}`` or FastAPI's ``{"detail"}``
read), a 5xx as 502 naming the node and nothing of its internals (503 stays 503: not ready).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, LogEvent
from driftloop_graphs.errors import error_body
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.request_log import RequestLogger
from driftloop_graphs.spec import Deployment, Node, Predictor
from driftloop_graphs.upstream import UpstreamError, UpstreamPool, UpstreamResponse

JSON = "application/json"
OUTLIER_FLAG = "outlier_flag"  # the outlier node's BOOL [N] verdict (OutlierRuntimeSettings.flag_output)


@dataclass(slots=True)  # made per request: a frozen dataclass's __init__ costs 4x
class Payload:
    body: bytes
    content_type: str = JSON


@dataclass(slots=True)  # made per request: a frozen dataclass's __init__ costs 4x
class CallContext:
    puid: str
    model_override: str | None = None
    skip_logging: bool = False
    outliers_counted: bool = False  # an outlier verdict of this request was counted (by this executor)


class NodeFailure(Exception):
    """A node answered non-200 (or could not be reached); the ingress returns ``status`` and ``body``."""

    def __init__(self, node: str, status: int, body: bytes, reason: str) -> None:
        super().__init__(f"graph node {node!r}: {reason}")
        self.node = node
        self.status = status
        self.body = body
        self.reason = reason


Answer = Callable[[Payload | NodeFailure], None]  # ``predict_then``'s outcome: the response or the failure


MAX_NODE_MESSAGE_CHARS = 1000


def node_message(body: bytes) -> str | None:
    """What a node's error body says (MLServer's ``{"error": "..."}``, FastAPI's ``{"detail": ...}``),
    or None when it holds nothing a client should see (not JSON, a stack trace)."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    found = message.get("error", message.get("detail"))
    if isinstance(found, list):  # FastAPI's validation errors: [{"loc": [...], "msg": "..."}, ...]
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', '')}"
            for e in found
            if isinstance(e, dict)
        ]
        found = "; ".join(parts) or None
    if not isinstance(found, str) or not found or "Traceback" in found:
        return None
    return found[:MAX_NODE_MESSAGE_CHARS]


def response_message(payload: Payload) -> dict[str, Any]:
    """A node's response as the JSON object ``chain`` feeds to the next node."""
    try:
        message = orjson.loads(payload.body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"response is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ValueError("response is not a JSON object")
    return message


def chain(payload: Payload, message: dict[str, Any] | None = None) -> Payload:
    """Seldon's ``ChainKFserving``: rename the previous response's ``outputs`` to ``inputs``
    (``message``: the payload already parsed by ``response_message``)."""
    if message is None:
        message = response_message(payload)
    if "inputs" in message:
        return payload
    if "outputs" not in message:
        raise ValueError("response has neither 'outputs' nor 'inputs', so it cannot feed the next node")
    message["inputs"] = message.pop("outputs")
    return Payload(orjson.dumps(message), payload.content_type)


def outlier_verdict(message: dict[str, Any]) -> tuple[int, int] | None:
    """(rows scored, rows flagged) of the ``outlier_flag`` BOOL tensor in a parsed node response (the
    tensors it passes on: ``inputs`` if present, else ``outputs``), or None when it carries none."""
    tensors = message.get("inputs", message.get("outputs"))
    if not isinstance(tensors, list):
        return None
    for tensor in tensors:
        if (
            isinstance(tensor, dict)
            and tensor.get("name") == OUTLIER_FLAG
            and tensor.get("datatype") == "BOOL"
        ):
            data = tensor.get("data")
            if not isinstance(data, list):
                return None
            while data and isinstance(data[0], list):  # V2 JSON also allows nested (row-major) data
                data = [x for row in data if isinstance(row, list) for x in row]
            return len(data), data.count(True)
    return None


class PredictorExecutor:
    def __init__(
        self,
        deployment: Deployment,
        predictor: Predictor,
        base_url: str,
        pool: UpstreamPool,
        metrics: IngressMetrics,
        request_logger: RequestLogger | None,
    ) -> None:
        self.deployment = deployment
        self.predictor = predictor
        self.base_url = base_url.rstrip("/")
        origin = urlsplit(self.base_url)
        if origin.scheme != "http" or origin.hostname is None or origin.port is None:
            raise ValueError(f"a predictor's MLServer URL must be http://host:port, got {base_url!r}")
        self._host, self._port = origin.hostname, origin.port
        self._pool = pool
        self._metrics = metrics
        self._logger = request_logger
        self._labels = (deployment.name, predictor.name)
        self._node_metrics: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._log_waits: set[asyncio.Task[None]] = set()  # ``predict_then`` answers waiting for log room
        graph = predictor.graph
        # whether a request's body becomes a log event (the ingress refuses one too large to log)
        self.logs_requests = request_logger is not None and any(
            n.logger is not None and n.logger.logs_requests for n in predictor.nodes()
        )
        # a graph of one node called once (on the way in or out, not both) needs no walk
        self._one_call = not graph.children and graph.transforms_input != graph.transforms_output
        # what ``predict_then`` reads per request, resolved once
        node_logger = graph.logger if request_logger is not None else None
        self._logs_requests = node_logger is not None and node_logger.logs_requests
        self._logs_responses = node_logger is not None and node_logger.logs_responses
        self._infer_path = f"/v2/models/{graph.name}/infer"
        # ``predict_then``'s request head up to the per-request headers (what ``_headers`` sends)
        self._infer_head = f"POST {self._infer_path} HTTP/1.1\r\nhost: {self._host}:{self._port}\r\n".encode()
        # the whole-graph success metrics, used by the ingress on every answered request
        self.ok_requests = metrics.requests.labels(*self._labels, "200")
        self.ok_latency = metrics.latency.labels(*self._labels)
        self._outlier_counters: tuple[Any, Any] | None = None  # (scored, flagged), made on first use

    async def predict(self, request: Payload, ctx: CallContext) -> Payload:
        if self._one_call:
            return await self._call(self.predictor.graph, request, ctx, from_node=False)
        return await self._predict(self.predictor.graph, request, ctx, from_node=False)

    def predict_then(self, request: Payload, ctx: CallContext, done: Answer) -> bool:
        """``predict`` reported to ``done`` (once, from a later callback) instead of awaited, for a graph
        of one node called once, on an idle pooled connection, with room in the request log's queue.
        Otherwise False at once, with nothing sent or logged: ``await predict`` then."""
        node = self.predictor.graph
        if not self._one_call or (ctx.model_override or node.name) != node.name:
            return False
        logs = not ctx.skip_logging
        logger = self._logger
        logged = logs and logger is not None and (self._logs_requests or self._logs_responses)
        if logged and logger is not None and not logger.has_room():
            return False  # ``submit`` waits for room (the ``block`` policy): the coroutine path does
        started = time.perf_counter()

        def answered(result: UpstreamResponse | UpstreamError) -> None:
            elapsed = time.perf_counter() - started
            if isinstance(result, UpstreamError):
                self._count(node, 0, elapsed)
                done(self._unreachable(node, result))
                return
            if result.status != 200:
                self._count(node, result.status, elapsed)
                done(self._refused_by(node, result.status, result.body))
                return
            response = Payload(result.body, result.content_type or JSON)
            # answered first (its bytes leave now, see socket_write), counted and logged after; room
            # for the response event is held first, so a full queue under ``block`` holds the answer
            if not self._logs_responses or logger is None:
                done(response)
            elif not logs:
                done(response)
                logger.skipped(1)
            elif logger.reserve():
                try:
                    done(response)
                finally:
                    logger.put_reserved(
                        self.predictor.log_topic, self._event(TYPE_RESPONSE, node, response, ctx)
                    )
            elif logger.offer(
                self.predictor.log_topic, event := self._event(TYPE_RESPONSE, node, response, ctx)
            ):
                done(response)
            else:
                self._answer_when_logged(logger, event, response, done)
            self._count(node, 200, elapsed)

        body, content_type, puid = request.body, request.content_type, ctx.puid
        wire = b"%scontent-length: %d\r\ncontent-type: %s\r\nseldon-puid: %s\r\n\r\n%s" % (
            self._infer_head,
            len(body),
            content_type.encode("latin-1"),
            puid.encode("latin-1"),
            body,
        )
        sent = self._pool.try_send(self._host, self._port, wire, answered, self._infer_path)
        if sent and self._logs_requests and logger is not None:
            if logs:
                logger.offer(self.predictor.log_topic, self._event(TYPE_REQUEST, node, request, ctx))
            else:
                logger.skipped(1)
        return sent

    def _answer_when_logged(
        self, logger: RequestLogger, event: LogEvent, response: Payload, done: Answer
    ) -> None:
        """The log queue filled since ``predict_then`` began: wait for room as ``submit`` does, then
        answer ``done``."""
        task = asyncio.get_running_loop().create_task(logger.submit(self.predictor.log_topic, event))
        self._log_waits.add(task)

        def logged(finished: asyncio.Task[None]) -> None:
            self._log_waits.discard(finished)
            done(response)

        task.add_done_callback(logged)

    async def _predict(self, node: Node, msg: Payload, ctx: CallContext, *, from_node: bool) -> Payload:
        if node.transforms_input:
            msg = await self._call(node, msg, ctx, from_node=from_node)
            from_node = True
        if node.children:
            results = await asyncio.gather(
                *(self._predict(child, msg, ctx, from_node=from_node) for child in node.children),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            first = results[0]
            assert isinstance(first, Payload)
            msg, from_node = first, True
        if node.transforms_output:
            msg = await self._call(node, msg, ctx, from_node=from_node)
        return msg

    async def _call(self, node: Node, msg: Payload, ctx: CallContext, *, from_node: bool) -> Payload:
        model = ctx.model_override or node.name
        logs = node.logger is not None and not ctx.skip_logging
        if node.logger is not None and node.logger.logs_requests:
            await self._log(TYPE_REQUEST, node, msg, ctx, skipped=not logs)
        if model != node.name:
            self._count(node, 404, 0.0)
            raise NodeFailure(
                node.name,
                404,
                error_body(
                    "model_not_found",
                    f"Model {model} not found: graph node {node.name!r} of predictor "
                    f"{self.predictor.name!r} serves only model {node.name!r}. Call "
                    ".../v2/models/infer to run the whole graph.",
                ),
                "model_not_served",
            )
        if from_node:
            try:
                message = response_message(msg)
                if not ctx.outliers_counted:
                    self._count_outliers(message, ctx)
                msg = chain(msg, message)
            except ValueError as exc:
                self._count(node, 502, 0.0)
                raise NodeFailure(
                    node.name,
                    502,
                    error_body("bad_node_response", f"cannot chain into {node.name!r}: {exc}"),
                    "chain",
                ) from exc
        started = time.perf_counter()
        try:
            response = await self._pool.request(
                "POST", self._host, self._port, f"/v2/models/{model}/infer", msg.body, self._headers(msg, ctx)
            )
        except UpstreamError as exc:
            self._count(node, 0, time.perf_counter() - started)
            raise self._unreachable(node, exc) from exc
        self._count(node, response.status, time.perf_counter() - started)
        if response.status != 200:
            raise self._refused_by(node, response.status, response.body)
        result = Payload(response.body, response.content_type or JSON)
        if node.logger is not None and node.logger.logs_responses:
            await self._log(TYPE_RESPONSE, node, result, ctx, skipped=not logs)
        return result

    @staticmethod
    def _headers(msg: Payload, ctx: CallContext) -> tuple[tuple[bytes, bytes], ...]:
        return (
            (b"content-type", msg.content_type.encode("latin-1")),
            (b"seldon-puid", ctx.puid.encode("latin-1")),
        )

    def _refused_by(self, node: Node, status: int, body: bytes) -> NodeFailure:
        """A node's non-200 answer, as the client gets it (see the module docstring)."""
        where = f"graph node {node.name!r} of predictor {self.predictor.name!r}"
        said = node_message(body)
        if status == 503:
            message = f"{where} is not ready (status 503){': ' + said if said else ''}"
            return NodeFailure(node.name, 503, error_body("node_unavailable", message), "status_503")
        if status >= 500 or status < 400:
            message = (
                f"{where} failed (its MLServer answered {status}); the cause is in that MLServer's log "
                f"(next to its model repository under the run directory)"
            )
            return NodeFailure(node.name, 502, error_body("node_error", message), f"status_{status}")
        message = f"{where} refused the request: {said or f'status {status}'}"
        return NodeFailure(node.name, status, error_body("node_refused", message), f"status_{status}")

    def _unreachable(self, node: Node, exc: UpstreamError) -> NodeFailure:
        return NodeFailure(
            node.name,
            503,
            error_body(
                "node_unreachable",
                f"graph node {node.name!r} of predictor {self.predictor.name!r} is unreachable: {exc}",
            ),
            "unreachable",
        )

    def _count_outliers(self, message: dict[str, Any], ctx: CallContext) -> None:
        verdict = outlier_verdict(message)
        if verdict is None:
            return
        ctx.outliers_counted = True  # a downstream node carrying the flag on is not counted again
        counters = self._outlier_counters
        if counters is None:
            counters = self._outlier_counters = (
                self._metrics.scored_rows.labels(*self._labels),
                self._metrics.outlier_rows.labels(*self._labels),
            )
        counters[0].inc(verdict[0])
        counters[1].inc(verdict[1])

    def _count(self, node: Node, status: int, seconds: float) -> None:
        children = self._node_metrics.get((node.name, status))
        if children is None:  # labels() costs a lock and a dict lookup per call: resolve once
            latency = self._metrics.node_latency.labels(*self._labels, node.name) if status else None
            counter = self._metrics.node_requests.labels(*self._labels, node.name, str(status))
            children = self._node_metrics[(node.name, status)] = (counter, latency)
        children[0].inc()
        if children[1] is not None:
            children[1].observe(seconds)

    async def _log(
        self, event_type: str, node: Node, msg: Payload, ctx: CallContext, *, skipped: bool
    ) -> None:
        """Log one event, or count it as skipped (``Seldon-Skip-Logging``)."""
        if self._logger is None:
            return
        if skipped:
            self._logger.skipped(1)
            return
        await self._logger.submit(self.predictor.log_topic, self._event(event_type, node, msg, ctx))

    def _event(self, event_type: str, node: Node, msg: Payload, ctx: CallContext) -> LogEvent:
        return LogEvent(
            type=event_type,
            request_id=ctx.puid,
            model_id=node.name,
            deployment=self.deployment.name,
            namespace=self.deployment.namespace,
            endpoint=self.predictor.name,
            protocol=self.deployment.protocol,
            content_type=msg.content_type,
            payload=msg.body,
        )

    async def post(self, path: str, body: bytes, content_type: str) -> UpstreamResponse:
        """POST ``body`` to a path on the predictor's MLServer outside any graph call (the learn route:
        nothing counted or logged here); raises ``UpstreamError`` when the node cannot be reached."""
        headers = ((b"content-type", content_type.encode("latin-1")),)
        return await self._pool.request("POST", self._host, self._port, path, body, headers)

    async def get(self, path: str) -> tuple[int, bytes, str]:
        """GET a path on the predictor's MLServer (readiness, metadata); 503 JSON when unreachable,
        an error answer in the one error shape."""
        try:
            response = await self._pool.request("GET", self._host, self._port, path)
        except UpstreamError as exc:
            message = f"predictor {self.predictor.name!r} is unreachable: {exc}"
            return 503, error_body("node_unreachable", message), JSON
        if response.status == 200:
            return response.status, response.body, response.content_type or JSON
        said = node_message(response.body)
        where = f"predictor {self.predictor.name!r}: GET {path}"
        if response.status >= 500 and response.status != 503:
            return 502, error_body("node_error", f"{where} failed with status {response.status}"), JSON
        code = "node_unavailable" if response.status == 503 else "node_refused"
        return response.status, error_body(code, f"{where}: {said or f'status {response.status}'}"), JSON
