"""The ingress: Seldon's external paths for every deployment the runtime serves.

``/seldon/<namespace>/<name>/v2/models/infer`` runs the whole graph of the predictor the traffic
split picks; ``.../v2/models/<model>/infer`` does the same with a model name applied to every node
(Seldon semantics); ``GET .../v2/models/<model>/ready`` and ``GET .../v2/models/<model>`` reach the
node's MLServer; ``GET .../v2/health/ready|live`` the whole deployment. ``Seldon-Puid`` is generated
when absent and echoed. Node errors come back with the node's status and a JSON message.
``POST .../v2/models[/<model>]/learn`` forwards a label to the node's learn route in every predictor
(``learn``; on the coroutine path only, never logged).

An inference request MLServer cannot take is refused before any node sees it (``request_checks``,
in ``_prepare``, which both the coroutine and the callback path go through). Every error answer has
the one error shape (``errors.error_body``), and every refusal is counted in
``driftloop_ingress_refused_total{code}`` (inference requests also in ``driftloop_ingress_requests_total``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from driftloop_graphs.executor import JSON, CallContext, NodeFailure, Payload, PredictorExecutor
from driftloop_graphs.http_server import HttpRequest, HttpResponse, Responder, json_error
from driftloop_graphs.learn import Learned, learn_answer, learn_everywhere, learn_targets
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.puid import new_puid
from driftloop_graphs.request_checks import IngressLimits, Refusal, check_body, check_headers, check_puid
from driftloop_graphs.request_log import RequestLogger
from driftloop_graphs.spec import Deployment
from driftloop_graphs.traffic import TrafficTable

logger = logging.getLogger(__name__)

PUID_HEADER = "Seldon-Puid"
MAX_SHADOW_IN_FLIGHT = 256
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # Go's strconv.ParseBool, as Seldon reads the header


@dataclass
class DeploymentRuntime:
    """What the ingress and the control API share for one deployment. ``traffic`` is swapped whole."""

    deployment: Deployment
    executors: dict[str, PredictorExecutor]
    traffic: TrafficTable
    shadow: PredictorExecutor | None = None
    shadow_tasks: set[asyncio.Task[None]] = field(default_factory=set)


def _json(status: int, code: str, message: str, puid: str | None = None) -> HttpResponse:
    response = json_error(status, code, message)
    return HttpResponse(status, response.body, JSON, ((PUID_HEADER, puid),)) if puid else response


class Ingress:
    def __init__(
        self,
        runtimes: dict[tuple[str, str], DeploymentRuntime],
        metrics: IngressMetrics,
        request_logger: RequestLogger | None,
        limits: IngressLimits | None = None,
    ) -> None:
        self.runtimes = runtimes
        self.metrics = metrics
        self.request_logger = request_logger
        self.limits = limits if limits is not None else IngressLimits()
        # inference paths seen by ``fast`` -> (deployment, model named in the path): one lookup a call
        self._fast_routes: dict[str, tuple[DeploymentRuntime, str | None]] = {}

    def server_options(self) -> dict[str, Any]:
        """The ``HttpServer`` keyword arguments that apply this ingress's limits and count the
        server's own refusals (431, 408, 413, malformed requests) with the ingress's."""
        limits = self.limits
        return {
            "max_header_count": limits.max_header_count,
            "max_header_bytes": limits.max_header_bytes,
            "header_timeout_s": limits.header_timeout_s,
            "refused": lambda status, code: self.metrics.refused.labels(code).inc(),
        }

    async def handle(self, request: HttpRequest) -> HttpResponse:
        """Route one request. Paths are Seldon's; anything else is a JSON 404 (or 405) saying so."""
        parts = request.path.split("/")
        # ['', 'seldon', ns, name, 'v2', ...]
        if len(parts) >= 6 and parts[1] == "seldon" and parts[4] == "v2":
            namespace, name, rest = parts[2], parts[3], parts[5:]
            runtime = self.runtimes.get((namespace, name))
            if runtime is None:
                return self._unknown(namespace, name)
            if rest[0] == "models" and len(rest) in (2, 3) and rest[-1] == "infer":
                if request.method != "POST":
                    return self._not_allowed(request.method, "POST")
                return await self.infer(request, runtime, rest[1] if len(rest) == 3 else None)
            if rest[0] == "models" and len(rest) in (2, 3) and rest[-1] == "learn":
                return await self.learn(request, runtime, rest[1] if len(rest) == 3 else None)
            if rest[0] == "models" and len(rest) == 3 and rest[2] == "ready":
                puid = request.headers.get("seldon-puid")
                return await self._get(request, self._node_get, runtime, rest[1], "/ready", puid)
            if rest[0] == "models" and len(rest) == 2:
                puid = request.headers.get("seldon-puid")
                return await self._get(request, self._node_get, runtime, rest[1], "", puid)
            if len(rest) == 2 and (rest[0], rest[1]) == ("health", "ready"):
                return await self._get(request, self._ready, [runtime])
            if len(rest) == 2 and (rest[0], rest[1]) == ("health", "live"):
                return await self._get(request, self.live)
        elif request.path == "/ready":
            return await self._get(request, self._ready, list(self.runtimes.values()))
        elif request.path == "/live":
            return await self._get(request, self.live)
        elif request.path == "/metrics":
            return await self._get(request, self.prometheus)
        return self._refuse(
            404,
            "no_route",
            f"no route {request.path!r}: the ingress serves /seldon/<namespace>/<name>/v2/models/infer, "
            ".../v2/models/<model>/infer|ready, .../v2/models[/<model>]/learn, .../v2/models/<model>, "
            ".../v2/health/ready|live, "
            "/ready, /live and /metrics",
        )

    async def _get(self, request: HttpRequest, handler: Any, *args: Any) -> HttpResponse:
        if request.method != "GET":
            return self._not_allowed(request.method, "GET")
        result: HttpResponse = await handler(*args)
        return result

    def _refuse(self, status: int, code: str, message: str, puid: str | None = None) -> HttpResponse:
        """An error answer of the ingress's own, counted in ``refused``."""
        self.metrics.refused.labels(code).inc()
        return _json(status, code, message, puid)

    def _not_allowed(self, method: str, allowed: str) -> HttpResponse:
        response = self._refuse(405, "method_not_allowed", f"{method} not allowed here: use {allowed}")
        return HttpResponse(405, response.body, JSON, (("allow", allowed),))

    def _unknown(self, namespace: str, name: str) -> HttpResponse:
        known = [f"{n}/{d}" for n, d in self.runtimes]
        message = f"no SeldonDeployment {namespace}/{name} is running here; serving: {known}"
        return self._refuse(404, "unknown_deployment", message)

    def fast(self, request: HttpRequest, respond: Responder) -> bool:
        """``handle`` without a coroutine, for an inference request the chosen predictor can answer from
        a callback (``PredictorExecutor.predict_then``: one node, an idle connection, room in the log
        queue). The same answers, metrics and log events. False, with nothing done, for anything else:
        the server then gives the request to ``handle``."""
        if request.method != "POST":
            return False
        route = self._fast_routes.get(request.path) or self._fast_route(request.path)
        if route is None:
            return False
        runtime, model = route
        call = self._prepare(request, runtime, model)
        if isinstance(call, HttpResponse):
            respond(call)
            return True
        executor, payload, ctx, started = call

        def done(result: Payload | NodeFailure) -> None:
            try:
                response = self._response(ctx.puid, result)
            except Exception as exc:  # answer the client whatever happened; the trace goes to the log
                logger.exception("ingress: answering %s failed", request.path)
                message = f"the ingress failed on POST {request.path}: {type(exc).__name__}"
                response = _json(500, "internal", message, ctx.puid)
            respond(response)  # first: its bytes leave now (see socket_write); counted after
            self._count(executor, started, result)

        if not executor.predict_then(payload, ctx, done):
            return False
        if runtime.shadow is not None:
            self._mirror(runtime, payload, ctx)
        return True

    def _fast_route(self, path: str) -> tuple[DeploymentRuntime, str | None] | None:
        """The deployment and model of an inference path (``.../v2/models[/<model>]/infer``), or None;
        remembered for the next call (up to 1,024 paths: a client cannot grow it without bound)."""
        parts = path.split("/")
        n = len(parts)
        if n not in (7, 8) or parts[1] != "seldon" or parts[4] != "v2" or parts[5] != "models":
            return None
        if parts[-1] != "infer":
            return None
        runtime = self.runtimes.get((parts[2], parts[3]))
        if runtime is None:
            return None
        route = (runtime, parts[6] if n == 8 else None)
        if len(self._fast_routes) < 1024:
            self._fast_routes[path] = route
        return route

    async def infer(
        self, request: HttpRequest, runtime: DeploymentRuntime, model: str | None
    ) -> HttpResponse:
        call = self._prepare(request, runtime, model)
        if isinstance(call, HttpResponse):
            return call
        executor, payload, ctx, started = call
        if runtime.shadow is not None:
            self._mirror(runtime, payload, ctx)
        try:
            result = await executor.predict(payload, ctx)
        except NodeFailure as failure:
            return self._answer(executor, ctx.puid, started, failure)
        return self._answer(executor, ctx.puid, started, result)

    def _prepare(
        self, request: HttpRequest, runtime: DeploymentRuntime, model: str | None
    ) -> HttpResponse | tuple[PredictorExecutor, Payload, CallContext, float]:
        """The predictor, payload and context of an inference call, or the answer that refuses it
        (counted: the predictor's ``requests`` by status, ``refused`` by code)."""
        started = time.perf_counter()
        headers = request.headers
        given = headers.get("seldon-puid")
        try:
            if given:
                check_puid(given, self.limits)
        except Refusal as refusal:  # not echoed: an answer carries only a puid that is safe to send
            return self._refuse_call(runtime, runtime.traffic.weights[0][0], refusal, None)
        puid = given or new_puid()
        skip = headers.get("seldon-skip-logging", "") in _TRUE
        executor = runtime.executors[runtime.traffic.choose(puid)]
        try:
            check_headers(headers)
            check_body(request.body, self.limits, executor.logs_requests and not skip)
        except Refusal as refusal:
            return self._refuse_call(runtime, executor.predictor.name, refusal, puid)
        ctx = CallContext(puid=puid, model_override=model, skip_logging=skip)
        payload = Payload(request.body, headers.get("content-type") or JSON)
        return executor, payload, ctx, started

    def _refuse_call(
        self, runtime: DeploymentRuntime, predictor: str, refusal: Refusal, puid: str | None
    ) -> HttpResponse:
        self.metrics.requests.labels(runtime.deployment.name, predictor, str(refusal.status)).inc()
        return self._refuse(refusal.status, refusal.code, refusal.message, puid)

    def _answer(
        self, executor: PredictorExecutor, puid: str, started: float, result: Payload | NodeFailure
    ) -> HttpResponse:
        """The client's answer to a graph call, counted."""
        self._count(executor, started, result)
        return self._response(puid, result)

    @staticmethod
    def _response(puid: str, result: Payload | NodeFailure) -> HttpResponse:
        if isinstance(result, NodeFailure):
            return HttpResponse(result.status, result.body, JSON, ((PUID_HEADER, puid),))
        return HttpResponse(200, result.body, result.content_type, ((PUID_HEADER, puid),))

    def _count(self, executor: PredictorExecutor, started: float, result: Payload | NodeFailure) -> None:
        if isinstance(result, NodeFailure):
            labels = (executor.deployment.name, executor.predictor.name)
            self.metrics.errors.labels(*labels, result.node, result.reason).inc()
            self.metrics.requests.labels(*labels, str(result.status)).inc()
        else:
            executor.ok_requests.inc()
            executor.ok_latency.observe(time.perf_counter() - started)

    def _mirror(self, runtime: DeploymentRuntime, payload: Payload, ctx: CallContext) -> None:
        shadow = runtime.shadow
        assert shadow is not None
        name = (runtime.deployment.name, shadow.predictor.name)
        if len(runtime.shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            self.metrics.shadow.labels(*name, "skipped_overload").inc()
            return

        own = CallContext(ctx.puid, ctx.model_override, ctx.skip_logging)  # its own outlier count

        async def mirror() -> None:
            try:
                await shadow.predict(payload, own)
            except NodeFailure:
                self.metrics.shadow.labels(*name, "error").inc()
            except Exception:  # a shadow must never hurt the main path; say what happened
                logger.exception("shadow predictor %s failed", shadow.predictor.name)
                self.metrics.shadow.labels(*name, "error").inc()
            else:
                self.metrics.shadow.labels(*name, "ok").inc()

        task = asyncio.create_task(mirror())
        runtime.shadow_tasks.add(task)
        task.add_done_callback(runtime.shadow_tasks.discard)

    async def learn(
        self, request: HttpRequest, runtime: DeploymentRuntime, model: str | None
    ) -> HttpResponse:
        """Forward a learn call to ``model`` (or every MODEL node) in every predictor (``learn``)."""
        deployment = runtime.deployment
        counter = self.metrics.learn
        if request.method != "POST":
            counter.labels(deployment.name, "refused").inc()
            return self._not_allowed(request.method, "POST")
        shadow = [runtime.shadow] if runtime.shadow is not None else []
        by_name = {e.predictor.name: e for e in [*runtime.executors.values(), *shadow]}
        executors = [by_name[p.name] for p in deployment.predictors if p.name in by_name]
        targets = learn_targets(executors, model)
        if not targets:
            counter.labels(deployment.name, "refused").inc()
            nodes = sorted({n.name for e in executors for n in e.predictor.nodes()})
            wanted = f"model {model}" if model is not None else "a MODEL node"
            message = (
                f"Failed to find {wanted} to learn in {deployment.namespace}/{deployment.name}: "
                f"the graph's nodes are {nodes}"
            )
            return self._refuse(404, "model_not_found", message)
        try:
            check_headers(request.headers)
            check_body(request.body, self.limits, False)
        except Refusal as refusal:
            counter.labels(deployment.name, "refused").inc()
            return self._refuse(refusal.status, refusal.code, refusal.message)
        content_type = request.headers.get("content-type") or JSON
        outcomes = await learn_everywhere(targets, request.body, content_type)
        answer = learn_answer(outcomes)
        counter.labels(deployment.name, answer.outcome).inc()
        for outcome in outcomes:
            if isinstance(outcome, Learned):
                target = outcome.target
                rows = self.metrics.learned_rows.labels(deployment.name, target.predictor, target.node)
                rows.inc(outcome.learned)
        return HttpResponse(answer.status, answer.body, JSON)

    async def _node_get(
        self, runtime: DeploymentRuntime, model: str, suffix: str, puid: str | None
    ) -> HttpResponse:
        if puid:
            try:
                check_puid(puid, self.limits)
            except Refusal as refusal:
                return self._refuse(refusal.status, refusal.code, refusal.message)
        puid = puid or new_puid()
        executor = runtime.executors[runtime.traffic.choose(puid)]
        if executor.predictor.graph.find(model) is None:
            nodes = [n.name for n in executor.predictor.nodes()]
            message = f"Failed to find model {model}: the graph's nodes are {nodes}"
            return self._refuse(404, "model_not_found", message, puid)
        status, body, content_type = await executor.get(f"/v2/models/{model}{suffix}")
        return HttpResponse(status, body, content_type, ((PUID_HEADER, puid),))

    async def _ready(self, runtimes: list[DeploymentRuntime]) -> HttpResponse:
        executors = [e for r in runtimes for e in [*r.executors.values(), *([r.shadow] if r.shadow else [])]]
        results = await asyncio.gather(*(e.get("/v2/health/ready") for e in executors))
        not_ready = [
            e.predictor.name for e, (status, _, _) in zip(executors, results, strict=True) if status != 200
        ]
        if not_ready:
            return _json(503, "not_ready", f"predictor(s) not ready: {not_ready}")
        return HttpResponse(200, b"", None)

    async def live(self) -> HttpResponse:
        return HttpResponse(200, b"", None)

    async def prometheus(self) -> HttpResponse:
        if self.request_logger is not None:
            self.metrics.log_queue_depth.set(self.request_logger.depth)
        return HttpResponse(200, self.metrics.render(), "text/plain; version=0.0.4")
