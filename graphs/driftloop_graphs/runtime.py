"""The local runtime: MLServer processes per predictor, the ingress and the control API in one loop.

``LocalRuntime(deployments, settings, event_log)``; ``await start()`` returns the seconds to ready;
``await stop()`` stops everything it started (the MLServer process groups included). While it runs,
each MLServer is supervised (``supervision``): restarted with backoff if it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from driftloop.eventlog.base import EventLog
from driftloop.mlserver_env import server_env
from driftloop.mlserver_process import MLServerProcess
from driftloop.settings import StateSettings
from driftloop_graphs.control import ControlError, control_app
from driftloop_graphs.executor import PredictorExecutor
from driftloop_graphs.http_server import HttpServer
from driftloop_graphs.ingress import DeploymentRuntime, Ingress
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.repository import build_repository, restore_settings, set_model_uri
from driftloop_graphs.request_checks import IngressLimits
from driftloop_graphs.request_log import RequestLogger, RequestLogSettings
from driftloop_graphs.spec import Deployment
from driftloop_graphs.supervision import RestartBackoff, ServerSupervisor, SupervisionMetrics
from driftloop_graphs.traffic import TrafficTable
from driftloop_graphs.upstream import UpstreamPool

HOST = "127.0.0.1"


@dataclass
class RuntimeSettings:
    models_root: Path = Path("models")
    run_dir: Path = field(default_factory=lambda: StateSettings().run_dir() / "local-runtime")
    host: str = HOST
    port: int = 0
    control_host: str = HOST
    control_port: int = 0
    request_log: RequestLogSettings = field(default_factory=RequestLogSettings)
    mlserver_env: dict[str, str] = field(default_factory=dict)
    max_connections: int = 512  # to each MLServer
    max_body_bytes: int = 64 * 1024 * 1024  # a larger inference request is answered 413
    limits: IngressLimits = field(default_factory=IngressLimits)  # DRIFTLOOP_INGRESS_* (request_checks)
    restart_backoff: RestartBackoff = field(default_factory=RestartBackoff)  # copied per MLServer
    supervise_poll_s: float = 0.25  # how often each MLServer process is checked


def bind(host: str, port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # accepted sockets inherit it; without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class _QuietServer(uvicorn.Server):
    """uvicorn server whose signals are handled by the runtime (two servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class LocalRuntime:
    def __init__(
        self,
        deployments: list[Deployment],
        settings: RuntimeSettings,
        event_log: EventLog | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for deployment in deployments:
            deployment.require_local_support()
        self.deployments = deployments
        self.settings = settings
        self.event_log = event_log
        self.clock = clock
        self.metrics = IngressMetrics()
        self.supervision = SupervisionMetrics(self.metrics.registry)
        self.supervisors: dict[tuple[str, str, str], ServerSupervisor] = {}
        self._supervising: list[asyncio.Task[None]] = []
        # called (on the loop) after a supervisor restarted an MLServer: its PID changed
        self.on_processes_changed: list[Callable[[], object]] = []
        self.token = secrets.token_urlsafe(32)
        self.runtimes: dict[tuple[str, str], DeploymentRuntime] = {}
        self.servers: dict[tuple[str, str, str], MLServerProcess] = {}
        self.repositories: dict[tuple[str, str, str], Path] = {}
        self.request_logger: RequestLogger | None = None
        self._client: httpx.AsyncClient | None = None
        self._pool: UpstreamPool | None = None
        self._uvicorn: list[tuple[_QuietServer, asyncio.Task[None]]] = []
        self._ingress_server: HttpServer | None = None
        self._lock = asyncio.Lock()
        self.port = self.control_port = 0

    # -- start / stop --------------------------------------------------------------------------------
    async def start(self) -> float:
        started = self.clock()
        try:
            await self._start_mlservers()
            # below MLServer's (uvicorn's) 5 s keep-alive, so the ingress never reuses a connection the
            # server is closing (that race would fail a request with "server closed the connection")
            self._pool = UpstreamPool(max_connections=self.settings.max_connections, keepalive_expiry_s=2.0)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0))  # control calls
            self._start_request_logger()
            self._build_runtimes()
            ingress = Ingress(self.runtimes, self.metrics, self.request_logger, self.settings.limits)
            self._ingress_server = HttpServer(
                ingress.handle,
                fast=ingress.fast,
                max_body_bytes=self.settings.max_body_bytes,
                **ingress.server_options(),
            )
            sock = bind(self.settings.host, self.settings.port)
            await self._ingress_server.start(sock)
            self.port = int(sock.getsockname()[1])
            self.control_port = await self._serve(
                control_app(self, self.token), self.settings.control_host, self.settings.control_port
            )
            self._supervise()
        except BaseException:
            await self.stop()
            raise
        return self.clock() - started

    async def _start_mlservers(self) -> None:
        env = {
            **server_env(StateSettings()),  # DRIFTLOOP_HOME + MLflow URIs, so models:/ URIs resolve
            "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH", "")])),
            **self.settings.mlserver_env,
        }
        for deployment in self.deployments:
            for predictor in deployment.predictors:
                key = (deployment.namespace, deployment.name, predictor.name)
                base = self.settings.run_dir / f"{deployment.namespace}.{deployment.name}" / predictor.name
                self.repositories[key] = build_repository(
                    predictor, self.settings.models_root.resolve(), base / "repository"
                )
        # several MLServers: fork them from one process that imports MLServer and the runtimes' libraries
        # once (~7 s of CPU each otherwise); if it cannot start, each MLServer is a plain `mlserver start`
        from driftloop.mlserver_forkserver import ForkServer, ForkServerError, preload_modules

        forkserver = None
        if len(self.repositories) > 1:
            forkserver = ForkServer(
                preload=preload_modules(self.repositories.values(), env),
                env=env,
                log_path=self.settings.run_dir / "mlserver-forkserver.log",
            )
            with contextlib.suppress(ForkServerError):  # MLServerProcess warns and starts a process
                forkserver.start()
        for key, repository in self.repositories.items():
            namespace, name, predictor_name = key
            self.servers[key] = MLServerProcess(
                repository,
                env=env,
                run_dir=self.settings.run_dir / f"{namespace}.{name}" / predictor_name / "mlserver",
                name=f"{name}-{predictor_name}",
                forkserver=forkserver,
            )
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in self.servers.values()))

    def _supervise(self) -> None:
        for key, server in self.servers.items():
            supervisor = ServerSupervisor(
                server,
                (key[1], key[2]),
                self.supervision,
                dataclasses.replace(self.settings.restart_backoff),
                clock=self.clock,
                on_restart=self._processes_changed,
                poll_s=self.settings.supervise_poll_s,
            )
            self.supervisors[key] = supervisor
            self._supervising.append(asyncio.create_task(supervisor.run(), name=f"supervise {server.name}"))

    def _processes_changed(self) -> None:
        for listener in self.on_processes_changed:
            listener()

    def _start_request_logger(self) -> None:
        logged = [
            d for d in self.deployments for p in d.predictors for n in p.nodes() if n.logger is not None
        ]
        if not logged or self.event_log is None:
            return
        for deployment in self.deployments:
            for predictor in deployment.predictors:
                self.event_log.create_topic(predictor.log_topic)
        self.request_logger = RequestLogger(
            self.event_log.producer(), self.metrics, self.settings.request_log, self.event_log.partitions_for
        )
        self.request_logger.start()

    def _build_runtimes(self) -> None:
        assert self._pool is not None
        for deployment in self.deployments:
            executors = {
                p.name: PredictorExecutor(
                    deployment,
                    p,
                    self.servers[(deployment.namespace, deployment.name, p.name)].url,
                    self._pool,
                    self.metrics,
                    self.request_logger,
                )
                for p in deployment.predictors
            }
            main = [p.name for p in deployment.main_predictors]
            traffic = TrafficTable.build({p.name: p.traffic for p in deployment.main_predictors}, main)
            shadow = executors[deployment.shadow.name] if deployment.shadow else None
            runtime = DeploymentRuntime(deployment, {n: executors[n] for n in main}, traffic, shadow)
            self.runtimes[(deployment.namespace, deployment.name)] = runtime
            self._publish_traffic(runtime)

    async def _serve(self, app: Any, host: str, port: int) -> int:
        sock = bind(host, port)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            http="httptools",
            # longer than clients' idle expiry (httpx 5 s), so clients close idle connections first
            timeout_keep_alive=75,
            backlog=4096,
        )
        server = _QuietServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        self._uvicorn.append((server, task))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        for task in self._supervising:  # first: nothing restarts what is being stopped
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._supervising, return_exceptions=True)
        self._supervising.clear()
        if self._ingress_server is not None:
            await self._ingress_server.stop()
            self._ingress_server = None
        for server, _ in self._uvicorn:
            server.should_exit = True
        for _, task in self._uvicorn:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        self._uvicorn.clear()
        for runtime in self.runtimes.values():
            if runtime.shadow_tasks:
                await asyncio.wait(list(runtime.shadow_tasks), timeout=10)
        if self.request_logger is not None:
            await self.request_logger.close()
            self.request_logger = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        await asyncio.gather(*(asyncio.to_thread(server.stop) for server in self.servers.values()))
        forkservers = {id(s.forkserver): s.forkserver for s in self.servers.values() if s.forkserver}
        for forkserver in forkservers.values():  # it has reaped the MLServers it forked; now it exits
            await asyncio.to_thread(forkserver.close)

    def pids(self) -> list[int]:
        return [s.pid for s in self.servers.values() if s.pid is not None]

    def forkserver_pids(self) -> list[int]:
        forkservers = {id(s.forkserver): s.forkserver for s in self.servers.values() if s.forkserver}
        return [f.pid for f in forkservers.values() if f.pid is not None and f.alive]

    def url(self, deployment: Deployment) -> str:
        return f"http://{self.settings.host}:{self.port}/seldon/{deployment.namespace}/{deployment.name}"

    # -- control -------------------------------------------------------------------------------------
    def _runtime(self, namespace: str, name: str) -> DeploymentRuntime:
        runtime = self.runtimes.get((namespace, name))
        if runtime is None:
            raise ControlError(404, f"no SeldonDeployment {namespace}/{name} is running here")
        return runtime

    def _publish_traffic(self, runtime: DeploymentRuntime) -> None:
        for name, weight in runtime.traffic.as_dict().items():
            self.metrics.traffic_weight.labels(runtime.deployment.name, name).set(weight)

    def describe(self, namespace: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (ns, dep_name), runtime in self.runtimes.items():
            if (namespace, name) != (None, None) and (ns, dep_name) != (namespace, name):
                continue
            predictors = []
            for p in runtime.deployment.predictors:
                server = self.servers[(ns, dep_name, p.name)]
                supervisor = self.supervisors.get((ns, dep_name, p.name))
                predictors.append(
                    {
                        "name": p.name,
                        "shadow": p.shadow,
                        "traffic": runtime.traffic.as_dict().get(p.name, 0),
                        "mlserver": server.url,
                        "mlserver_state": self._server_state((ns, dep_name, p.name)),
                        "mlserver_restarts": supervisor.restarts if supervisor else 0,
                        "nodes": {n.name: n.model_uri for n in p.nodes()},
                    }
                )
            out.append({"namespace": ns, "name": dep_name, "predictors": predictors})
        return out

    async def set_traffic(self, namespace: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        async with self._lock:
            runtime = self._runtime(namespace, name)
            main = [p.name for p in runtime.deployment.main_predictors]
            runtime.traffic = TrafficTable.build(weights, main)  # one assignment: atomic for requests
            self._publish_traffic(runtime)
            return self.describe(namespace, name)[0]

    def _server_state(self, key: tuple[str, str, str]) -> str:
        supervisor = self.supervisors.get(key)
        if supervisor is not None and supervisor.state != "up":
            return supervisor.state
        return "up" if self.servers[key].running else "down"

    async def set_model(
        self, namespace: str, name: str, predictor: str, node: str, model_uri: str
    ) -> dict[str, Any]:
        async with self._lock:
            runtime = self._runtime(namespace, name)
            spec = runtime.deployment.predictor(predictor)
            target = spec.graph.find(node) if spec else None
            if spec is None or target is None:
                raise ControlError(404, f"no node {node!r} in predictor {predictor!r} of {namespace}/{name}")
            key = (namespace, name, predictor)
            supervisor = self.supervisors.get(key)
            lock = supervisor.lock if supervisor is not None else asyncio.Lock()
            async with lock:  # no restart of this MLServer while its settings change
                await self._swap_model(key, node, target, model_uri)
            return self.describe(namespace, name)[0]

    async def _swap_model(self, key: tuple[str, str, str], node: str, target: Any, model_uri: str) -> None:
        """Point ``node`` at ``model_uri`` and have its MLServer load it; on any failure the previous
        settings are put back (the previous model keeps serving) and ``ControlError`` names the cause."""
        repository, server = self.repositories[key], self.servers[key]
        predictor = key[2]
        state = self._server_state(key)
        if state != "up":
            raise ControlError(
                503,
                f"the MLServer of predictor {predictor!r} is {state} (it is restarted with backoff); "
                f"node {node!r} still points at {target.model_uri!r}: retry once /ready answers 200",
            )
        previous = (repository / node / "model-settings.json").read_text()
        log_offset = server.log_size()
        set_model_uri(repository, target, model_uri)
        assert self._client is not None
        try:
            response = await self._client.post(f"{server.url}/v2/repository/models/{node}/load", timeout=300)
        except httpx.HTTPError as exc:
            restore_settings(repository, node, previous)
            raise ControlError(
                503,
                f"the MLServer of predictor {predictor!r} did not answer the load of {model_uri!r} "
                f"({type(exc).__name__}); node {node!r} still points at {target.model_uri!r}",
            ) from None
        if response.status_code != 200:
            restore_settings(repository, node, previous)  # the old version keeps serving
            cause = _load_error(response) or server.last_error(since=log_offset)
            raise ControlError(
                502,
                f"MLServer could not load {model_uri!r} for node {node!r}: "
                f"{cause or f'status {response.status_code}, see {server.log_path}'}; "
                "the previous model keeps serving",
            )
        target.model_uri = model_uri


def _load_error(response: httpx.Response) -> str | None:
    """MLServer's own one-line error (``{"error": ...}``), if it answered one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.strip().splitlines()[-1] if isinstance(error, str) and error.strip() else None
