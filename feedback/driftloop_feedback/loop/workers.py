"""Which workers the loop runs, and how each is started: ``python -m driftloop <args>``.

Each worker is a child process started through its own CLI command, so the loop imports none of them
(nor the local runtime: the feedback side never imports ``driftloop_graphs``). A worker's Prometheus
endpoint is found in its own log, where it prints the URL it bound (a port it picked itself when
given 0, so no port chosen here can be taken first by another socket).

>>> [w.name for w in loop_workers(LoopOptions())]
['feedback-api', 'joiner', 'monitor', 'trainer', 'validator']
>>> loop_workers(LoopOptions(metrics_base_port=9100))[1].args
('feedback', 'join', '--metrics-port', '9101')
>>> [w.name for w in loop_workers(LoopOptions(rollout=True))][-1]
'rollout'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# What each CLI prints once it listens (group 1: the URL of its /metrics).
WORKER_METRICS = re.compile(r"metrics on (http://[^\s/]+/metrics)")
API_METRICS = re.compile(r"feedback API on (http://[^\s/]+) ")
RUNTIME_METRICS = re.compile(r"metrics\s+(http://[^\s/]+/metrics)")


@dataclass(frozen=True)
class WorkerSpec:
    """One supervised worker: its name (also its log file's), its ``driftloop`` arguments, how to find
    its /metrics URL in its log, and environment variables set for it only."""

    name: str
    args: tuple[str, ...]
    metrics_pattern: re.Pattern[str] = WORKER_METRICS
    metrics_suffix: str = ""  # appended to the matched URL (the feedback API prints its base URL)
    env: dict[str, str] = field(default_factory=dict)

    def metrics_url(self, log_text: str) -> str | None:
        found = self.metrics_pattern.search(log_text)
        return found.group(1) + self.metrics_suffix if found else None


@dataclass(frozen=True)
class LoopOptions:
    """What ``driftloop loop run`` was asked to run."""

    manifest: Path | None = None  # a SeldonDeployment to run on the local runtime first
    models_root: Path = Path("models")
    runtime_port: int = 9000
    feedback_port: int | None = None  # None: DRIFTLOOP_FEEDBACK_PORT or the API's default
    metrics_base_port: int = 0  # 0: every worker picks a free port; N: worker i gets N + i
    without: frozenset[str] = frozenset()
    rollout: bool = False  # also run the rollout controller (it needs a runtime with a canary predictor)


def _metrics_port(options: LoopOptions, index: int) -> str:
    return str(options.metrics_base_port + index if options.metrics_base_port else 0)


def loop_workers(options: LoopOptions) -> list[WorkerSpec]:
    """The workers in start order (upstream first: data flows serve -> log -> join -> learn -> validate)."""
    specs: list[WorkerSpec] = []
    if options.manifest is not None:
        specs.append(
            WorkerSpec(
                "runtime",
                (
                    "up",
                    str(options.manifest),
                    "--port",
                    str(options.runtime_port),
                    "--models",
                    str(options.models_root),
                ),
                metrics_pattern=RUNTIME_METRICS,
            )
        )
    api_args: tuple[str, ...] = ("feedback", "serve")
    if options.feedback_port is not None:
        api_args += ("--port", str(options.feedback_port))
    specs.append(WorkerSpec("feedback-api", api_args, API_METRICS, metrics_suffix="/metrics"))
    for index, (name, args) in enumerate(
        [
            ("joiner", ("feedback", "join")),
            ("monitor", ("monitor", "run")),
            ("trainer", ("trainer", "run")),
            ("validator", ("validator", "run")),
            # the rollout controller (opt-in: it drives the traffic of a deployment with a canary
            # predictor, e.g. manifests/pump-bearing-temp-canary.yaml): last, it acts on the verdicts
            *([("rollout", ("rollout", "run"))] if options.rollout else []),
        ],
        start=1,
    ):
        specs.append(WorkerSpec(name, (*args, "--metrics-port", _metrics_port(options, index))))
    unknown = options.without - {s.name for s in specs} - {"runtime"}
    if unknown:
        raise ValueError(
            f"--without {', '.join(sorted(unknown))}: no such worker; "
            f"the workers are {', '.join(s.name for s in specs)}"
        )
    return [s for s in specs if s.name not in options.without]
