"""The ingress: Seldon's external paths for every deployment the runtime serves.

``/seldon/<namespace>/<name>/v2/models/infer`` runs the whole graph of the predictor the traffic
split picks; ``.../v2/models/<model>/infer`` does the same with a model name applied to every node
(Seldon semantics); ``GET .../v2/models/<model>/ready`` and ``GET .../v2/models/<model>`` reach the
node's MLServer; ``GET .../v2/health/ready|live`` the whole deployment. ``Seldon-Puid`` is generated
when absent and echoed. Node errors come back with the node's status and a JSON message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from driftloop_graphs.executor import JSON, CallContext, NodeFailure, Payload, PredictorExecutor, error_body
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.request_log import RequestLogger
from driftloop_graphs.spec import Deployment
from driftloop_graphs.traffic import TrafficTable

logger = logging.getLogger(__name__)

PUID_HEADER = "Seldon-Puid"
SKIP_LOGGING_HEADER = "Seldon-Skip-Logging"
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


def _json(status: int, message: str, puid: str | None = None) -> Response:
    headers = {PUID_HEADER: puid} if puid else None
    return Response(error_body(message), status_code=status, media_type=JSON, headers=headers)


class Ingress:
    def __init__(
        self,
        runtimes: dict[tuple[str, str], DeploymentRuntime],
        metrics: IngressMetrics,
        request_logger: RequestLogger | None,
    ) -> None:
        self.runtimes = runtimes
        self.metrics = metrics
        self.request_logger = request_logger

    def app(self) -> Starlette:
        prefix = "/seldon/{namespace}/{name}/v2"
        routes = [
            Route(f"{prefix}/models/infer", self.infer, methods=["POST"]),
            Route(prefix + "/models/{model}/infer", self.infer, methods=["POST"]),
            Route(prefix + "/models/{model}/ready", self.model_ready, methods=["GET"]),
            Route(prefix + "/models/{model}", self.model_metadata, methods=["GET"]),
            Route(f"{prefix}/health/ready", self.deployment_ready, methods=["GET"]),
            Route(f"{prefix}/health/live", self.live, methods=["GET"]),
            Route("/ready", self.all_ready, methods=["GET"]),
            Route("/live", self.live, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    def _runtime(self, request: Request) -> DeploymentRuntime | None:
        key = (request.path_params["namespace"], request.path_params["name"])
        return self.runtimes.get(key)

    def _unknown(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        known = [f"{n}/{d}" for n, d in self.runtimes]
        return _json(404, f"no SeldonDeployment {ns}/{name} is running here; serving: {known}")

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        runtime = self._runtime(request)
        if runtime is None:
            return self._unknown(request)
        puid = request.headers.get(PUID_HEADER) or str(uuid.uuid4())
        skip = request.headers.get(SKIP_LOGGING_HEADER, "") in _TRUE
        ctx = CallContext(puid=puid, model_override=request.path_params.get("model"), skip_logging=skip)
        payload = Payload(await request.body(), request.headers.get("content-type") or JSON)
        if not payload.body:
            return _json(400, "empty request body: send a V2 inference request with 'inputs'", puid)
        executor = runtime.executors[runtime.traffic.choose(puid)]
        labels = (runtime.deployment.name, executor.predictor.name)
        if runtime.shadow is not None:
            self._mirror(runtime, payload, ctx)
        try:
            result = await executor.predict(payload, ctx)
        except NodeFailure as failure:
            self.metrics.errors.labels(*labels, failure.node, failure.reason).inc()
            self.metrics.requests.labels(*labels, str(failure.status)).inc()
            return Response(
                failure.body, status_code=failure.status, media_type=JSON, headers={PUID_HEADER: puid}
            )
        self.metrics.requests.labels(*labels, "200").inc()
        self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        return Response(result.body, media_type=result.content_type, headers={PUID_HEADER: puid})

    def _mirror(self, runtime: DeploymentRuntime, payload: Payload, ctx: CallContext) -> None:
        shadow = runtime.shadow
        assert shadow is not None
        name = (runtime.deployment.name, shadow.predictor.name)
        if len(runtime.shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            self.metrics.shadow.labels(*name, "skipped_overload").inc()
            return

        async def mirror() -> None:
            try:
                await shadow.predict(payload, ctx)
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

    async def model_ready(self, request: Request) -> Response:
        return await self._node_get(request, "/ready")

    async def model_metadata(self, request: Request) -> Response:
        return await self._node_get(request, "")

    async def _node_get(self, request: Request, suffix: str) -> Response:
        runtime = self._runtime(request)
        if runtime is None:
            return self._unknown(request)
        model = request.path_params["model"]
        puid = request.headers.get(PUID_HEADER) or str(uuid.uuid4())
        executor = runtime.executors[runtime.traffic.choose(puid)]
        if executor.predictor.graph.find(model) is None:
            nodes = [n.name for n in executor.predictor.nodes()]
            return _json(404, f"Failed to find model {model}: the graph's nodes are {nodes}", puid)
        status, body, content_type = await executor.get(f"/v2/models/{model}{suffix}")
        return Response(body, status_code=status, media_type=content_type, headers={PUID_HEADER: puid})

    async def deployment_ready(self, request: Request) -> Response:
        runtime = self._runtime(request)
        if runtime is None:
            return self._unknown(request)
        return await self._ready([runtime])

    async def all_ready(self, request: Request) -> Response:
        return await self._ready(list(self.runtimes.values()))

    async def _ready(self, runtimes: list[DeploymentRuntime]) -> Response:
        executors = [e for r in runtimes for e in [*r.executors.values(), *([r.shadow] if r.shadow else [])]]
        results = await asyncio.gather(*(e.get("/v2/health/ready") for e in executors))
        not_ready = [
            e.predictor.name for e, (status, _, _) in zip(executors, results, strict=True) if status != 200
        ]
        if not_ready:
            return _json(503, f"predictor(s) not ready: {not_ready}")
        return Response(b"", status_code=200)

    async def live(self, request: Request) -> Response:
        return Response(b"", status_code=200)

    async def prometheus(self, request: Request) -> Response:
        if self.request_logger is not None:
            self.metrics.log_queue_depth.set(self.request_logger.depth)
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")
