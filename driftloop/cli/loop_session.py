"""The closed loop as processes, for a client that replays rows through it: the run's topics created,
``driftloop loop run --rollout`` started on a manifest, every worker waited for, a live ``rich`` display
from their /metrics and the runtime's control API, then everything stopped by PID.

``driftloop demo`` (the pump simulator) and ``driftloop replay`` (a plant's own data, live mode) both run
the loop through this one class::

    with LoopSession(console, run_home, manifest, env, models, topics, deployment, deadline) as loop:
        client.post(f"{loop.ingress}/v2/models/infer", ...)   # requests through the Seldon ingress
        client.post(f"{loop.api}/v1/feedback", headers=loop.auth, ...)   # ground truth, late
        loop.show(); loop.check()
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from driftloop.cli import demo_loop as dl

WORKERS = frozenset({"runtime", "feedback-api", "joiner", "monitor", "trainer", "validator", "rollout"})
SINGLE_PARTITION = ("drift", "rollouts")  # the joiner's topics are co-partitioned (2); these need order


def open_event_log_at(run_home: Path) -> Any:
    """The run's event log: Kafka when DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set, else the embedded one."""
    from driftloop.eventlog import open_event_log
    from driftloop.settings import StateSettings

    return open_event_log(StateSettings(home=run_home))


def create_topics(run_home: Path, topics: dict[str, str]) -> None:
    log = open_event_log_at(run_home)
    try:
        for name, topic in topics.items():
            log.create_topic(topic, 1 if name in SINGLE_PARTITION else 2)
    finally:
        log.close()


def loop_env(run_home: Path, settings: dict[str, str]) -> dict[str, str]:
    """This process's environment with the workers' ``settings``; the loop's own home, registry and
    feedback token (an inherited tracking URI or token would point the workers elsewhere)."""
    env = {**os.environ, **settings, "DRIFTLOOP_HOME": str(run_home)}
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    env.pop("DRIFTLOOP_FEEDBACK_TOKEN", None)
    return env


class LoopSession:
    """A running loop (see the module docstring). ``ingress``, ``api`` and ``auth`` are set once every
    worker serves its /metrics; leaving the ``with`` block (or a failed start) stops everything."""

    def __init__(
        self,
        console: Any,
        run_home: Path,
        manifest: Path,
        env: dict[str, str],
        models: Path,
        deployment: tuple[str, str],
        deadline: float,
        progress: dl.Progress,
    ) -> None:
        self.console, self.run_home, self.manifest = console, run_home, manifest
        self.env, self.models, self.deployment, self.deadline = env, models, deployment, deadline
        self.progress = progress
        self.client = httpx.Client()
        self.backend: Any = None
        self.loop: dl.LoopProcess | None = None
        self._live: Any = None
        self.ingress = self.api = self.token = ""
        self.auth: dict[str, str] = {}

    def __enter__(self) -> LoopSession:
        from driftloop_feedback.rollout.local_backend import LocalControlBackend
        from rich.live import Live

        try:
            self.loop = dl.LoopProcess(self.run_home, self.manifest, self.env, self.models)
            self._live = Live(self.progress.table(), console=self.console, refresh_per_second=4)
            self._live.__enter__()

            def ready() -> bool:
                self.show()
                return set(dl.metrics_urls(self.run_home)) >= WORKERS

            dl.wait_until("metrics URL of every worker", ready, self.deadline, self.loop)
            urls = dl.metrics_urls(self.run_home)
            self.backend = LocalControlBackend.from_run_dir(self.run_home / "run" / "local-runtime")
            namespace, name = self.deployment
            self.ingress = urls["runtime"].removesuffix("/metrics") + f"/seldon/{namespace}/{name}"
            self.api = urls["feedback-api"].removesuffix("/metrics")
            self.token = (self.run_home / "run" / "loop" / "feedback.token").read_text()
            self.auth = {"Authorization": f"Bearer {self.token}"}
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def show(self) -> dict[str, float]:
        """Refresh the display; the rollout outcomes so far (``promoted``, ``rolled_back``, ...)."""
        outcomes = dl.refresh(self.progress, self.run_home, self.client, self.backend, self.deployment)
        if self._live is not None:
            self._live.update(self.progress.table())
        return outcomes

    def check(self) -> None:
        """Raise RuntimeError when the loop process has exited."""
        if self.loop is not None:
            self.loop.check()

    def scrape(self, worker: str) -> dict[str, float]:
        return dl.scrape(dl.metrics_urls(self.run_home).get(worker), self.client)

    def close(self) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self._keep_trainer_metrics()
        self.client.close()
        if self.loop is not None:
            code = self.loop.stop()
            self.loop = None
            self.console.print(f"loop stopped (exit {code}); every worker stopped by PID")

    def _keep_trainer_metrics(self) -> None:
        """The trainer's last /metrics page (label latency histogram, counts), kept for bench/loop.py."""
        with contextlib.suppress(httpx.HTTPError, KeyError, OSError, RuntimeError):
            page = self.client.get(dl.metrics_urls(self.run_home)["trainer"], timeout=5.0).text
            (self.run_home / "trainer-metrics.txt").write_text(page)
