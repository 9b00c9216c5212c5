"""Supervision of the local runtime's MLServer processes: a dead one is noticed, restarted with
exponential backoff, and counted.

``ServerSupervisor.run()`` (one asyncio task per MLServer) asks every ``poll_s`` whether the process is
alive (which reaps an exited child: no zombie). When it is not, the server is marked down, and restarted
on the same ports after ``RestartBackoff.next_delay`` seconds: ``initial_s``, doubling per failed
attempt up to ``max_s``; once a restarted server has stayed up for ``reset_after_s`` the next exit starts
again from ``initial_s``. While it is down, the ingress answers its requests 503 (connection refused)
and ``/ready`` is 503; the control API refuses a model swap on it.

Metrics (in the runtime's registry, beside the ingress's): ``driftloop_mlserver_up{deployment,predictor}``
(1 when serving), ``driftloop_mlserver_exits_total`` (exits the supervisor noticed; a ``stop()`` is not
one) and ``driftloop_mlserver_restarts_total{...,outcome="ok|failed"}``.

>>> backoff = RestartBackoff(initial_s=1, factor=2, max_s=5, reset_after_s=60)
>>> [backoff.next_delay(now=0) for _ in range(5)]
[1, 2, 4, 5, 5]
>>> backoff.healthy(now=100); backoff.next_delay(now=170)
1
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

logger = logging.getLogger(__name__)

State = Literal["up", "down", "restarting"]


@dataclass
class RestartBackoff:
    """Delays between restarts: ``initial_s * factor**n`` for the n-th consecutive failure, at most
    ``max_s``; reset once a server has been healthy for ``reset_after_s``. Time is passed in."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    failures: int = 0
    healthy_since: float | None = None

    def healthy(self, now: float) -> None:
        """The server became ready at ``now``."""
        self.healthy_since = now

    def next_delay(self, now: float) -> float:
        """The server exited, or a restart failed, at ``now``: seconds to wait before the next start."""
        if self.healthy_since is not None and now - self.healthy_since >= self.reset_after_s:
            self.failures = 0
        self.healthy_since = None
        delay = min(self.max_s, self.initial_s * self.factor**self.failures)
        if delay < self.max_s:  # past the cap the exponent stops growing (no float overflow)
            self.failures += 1
        return delay


class SupervisionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("deployment", "predictor")
        self.up = Gauge(
            "driftloop_mlserver_up",
            "1 while the predictor's MLServer process is running and was ready, 0 while it is down",
            labels,
            registry=registry,
        )
        self.exits = Counter(
            "driftloop_mlserver_exits",
            "MLServer processes that exited while the runtime was serving (crash, OOM kill, kill -9)",
            labels,
            registry=registry,
        )
        self.restarts = Counter(
            "driftloop_mlserver_restarts",
            "Restarts of exited MLServer processes, by outcome (ok: ready again; failed: retried later)",
            (*labels, "outcome"),
            registry=registry,
        )


class Supervised(Protocol):
    """What the supervisor needs of a server (``driftloop.mlserver_process.MLServerProcess``)."""

    name: str
    log_path: Path | None

    @property
    def pid(self) -> int | None: ...

    @property
    def running(self) -> bool: ...

    @property
    def returncode(self) -> int | None: ...

    def restart(self) -> object: ...


class ServerSupervisor:
    """Keeps one server running; ``state`` is ``up``, ``down`` (waiting to restart) or ``restarting``."""

    def __init__(
        self,
        server: Supervised,
        labels: tuple[str, str],
        metrics: SupervisionMetrics,
        backoff: RestartBackoff,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        lock: asyncio.Lock | None = None,
        on_restart: Callable[[], None] | None = None,
        poll_s: float = 0.25,
    ) -> None:
        self.server = server
        self.labels = labels
        self.metrics = metrics
        self.backoff = backoff
        self.clock = clock
        self.lock = lock or asyncio.Lock()  # held while restarting (a model swap holds it too)
        self._sleep = sleep
        self._on_restart = on_restart
        self.poll_s = poll_s
        self.state: State = "up"
        self.restarts = 0
        self.last_exit_code: int | None = None

    async def run(self) -> None:
        """Supervise until cancelled (the server must be started and ready)."""
        self.backoff.healthy(self.clock())
        self.metrics.up.labels(*self.labels).set(1)
        while True:
            await self._sleep(self.poll_s)
            if not self.server.running:
                await self._recover()

    async def _recover(self) -> None:
        self.state = "down"
        self.last_exit_code = self.server.returncode
        self.metrics.up.labels(*self.labels).set(0)
        self.metrics.exits.labels(*self.labels).inc()
        while True:
            delay = self.backoff.next_delay(self.clock())
            logger.warning(
                "MLServer %s exited (code %s); restarting it in %.1f s (log %s)",
                self.server.name,
                self.last_exit_code,
                delay,
                self.server.log_path,
            )
            await self._sleep(delay)
            async with self.lock:
                self.state = "restarting"
                try:
                    await asyncio.to_thread(self.server.restart)
                except Exception as exc:  # any failure: count it, wait longer, try again
                    self.state = "down"
                    self.metrics.restarts.labels(*self.labels, "failed").inc()
                    logger.warning("MLServer %s did not restart: %s", self.server.name, exc)
                    continue
            self.state = "up"
            self.restarts += 1
            self.backoff.healthy(self.clock())
            self.metrics.restarts.labels(*self.labels, "ok").inc()
            self.metrics.up.labels(*self.labels).set(1)
            logger.warning("MLServer %s is serving again (pid %s)", self.server.name, self.server.pid)
            if self._on_restart is not None:
                self._on_restart()
            return
