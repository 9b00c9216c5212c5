"""The demo's closed loop as processes: ``driftloop loop run --rollout`` on the canary manifest, the
replay of telemetry through the ingress (truth posted late to the feedback API), a live ``rich``
display from the workers' /metrics and the runtime's control API, then the loop stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
import numpy as np

# The demo runs a checkout's manifest and model repository (`--checkout`, default the working directory,
# as `make demo` runs it): installed code never reads the source tree relative to its own files.
CANARY_MANIFEST = Path("manifests") / "pump-bearing-temp-canary.yaml"
MODELS = Path("models")


def checkout_path(checkout: Path, relative: Path) -> Path:
    """``relative`` inside the checkout; a clear error when it is not there."""
    path = (checkout / relative).resolve()
    if not path.exists():
        raise click.ClickException(
            f"{relative} not found in {checkout.resolve()}: run `driftloop demo` from a driftloop checkout "
            "or pass --checkout (it uses manifests/pump-bearing-temp-canary.yaml and the model repository "
            "models/)"
        )
    return path


MODEL = "pump-bearing-temp"
DEPLOYMENT = "plant/pump-bearing-temp"
ROWS_PER_CALL = 25
TRUTH_DELAY_CALLS = 8  # truth for a call is posted this many calls later (it arrives late)


def topic_names(suffix: str) -> dict[str, str]:
    """This run's topics (unique: a Kafka broker may hold earlier runs' records)."""
    names = ["request_log", "keyed_log", "feedback", "telemetry", "predictions", "labelled", "drift"]
    topics = {n: f"demo.{n.replace('_', '')}.{suffix}" for n in names}
    topics["rollouts"] = f"demo.rollouts.{suffix}"
    return topics


def worker_env(topics: dict[str, str], suffix: str) -> dict[str, str]:
    """Settings of the workers, tuned for a 3-minute demo (docs/use-case.md lists them)."""
    joiner = ["request_log", "keyed_log", "feedback", "telemetry", "predictions", "labelled"]
    return {
        **{f"DRIFTLOOP_JOINER_{k.upper()}_TOPIC": topics[k] for k in joiner},
        "DRIFTLOOP_JOINER_GROUP_ID": f"joiner-{suffix}",
        "DRIFTLOOP_JOINER_PARTITIONS": "2",
        "DRIFTLOOP_JOINER_MODE": "request",
        "DRIFTLOOP_JOINER_CHECKPOINT_INTERVAL_S": "0.3",
        "DRIFTLOOP_FEEDBACK_FEEDBACK_TOPIC": topics["feedback"],
        "DRIFTLOOP_FEEDBACK_TELEMETRY_TOPIC": topics["telemetry"],
        "DRIFTLOOP_MONITOR_REQUEST_LOG_TOPIC": topics["request_log"],
        "DRIFTLOOP_MONITOR_DRIFT_TOPIC": topics["drift"],
        "DRIFTLOOP_MONITOR_GROUP_ID": f"monitor-{suffix}",
        "DRIFTLOOP_MONITOR_BACKEND": "permissive",
        "DRIFTLOOP_MONITOR_WINDOW_ROWS": "200",
        "DRIFTLOOP_MONITOR_WINDOW_S": "30",
        "DRIFTLOOP_MONITOR_EXCLUDE_FEATURES": '["hour_sin", "hour_cos"]',
        "DRIFTLOOP_MONITOR_CHECKPOINT_INTERVAL_S": "1",
        "DRIFTLOOP_TRAINER_LABELLED_TOPIC": topics["labelled"],
        "DRIFTLOOP_TRAINER_DRIFT_TOPIC": topics["drift"],
        "DRIFTLOOP_TRAINER_GROUP_ID": f"trainer-{suffix}",
        "DRIFTLOOP_TRAINER_BATCH_SIZE": "64",
        "DRIFTLOOP_TRAINER_TOPIC_RETRY_S": "1",
        "DRIFTLOOP_TRAINER_CHAMPION_RETRY_S": "2",
        "DRIFTLOOP_TRAINER_CHECKPOINT_INTERVAL_S": "2",
        "DRIFTLOOP_TRAINER_POLICY__MIN_EXAMPLES": "100",
        "DRIFTLOOP_TRAINER_POLICY__MIN_INTERVAL_S": "30",
        "DRIFTLOOP_TRAINER_POLICY__DRIFT_MIN_EXAMPLES": "150",
        "DRIFTLOOP_TRAINER_POLICY__DEGRADATION_ENABLED": "false",
        "DRIFTLOOP_VALIDATOR_LABELLED_TOPIC": topics["labelled"],
        "DRIFTLOOP_VALIDATOR_GROUP_ID": f"validator-{suffix}",
        "DRIFTLOOP_VALIDATOR_REGISTRY_POLL_S": "0.5",
        "DRIFTLOOP_VALIDATOR_TOPIC_RETRY_S": "1",
        "DRIFTLOOP_VALIDATION_LOSS_BOUND": "10",
        # the controller: two small steps, a check every 4 s, 2 failed checks roll back
        "DRIFTLOOP_ROLLOUT_LABELLED_TOPIC": topics["labelled"],
        "DRIFTLOOP_ROLLOUT_ROLLOUTS_TOPIC": topics["rollouts"],
        "DRIFTLOOP_ROLLOUT_GROUP_ID": f"rollout-{suffix}",
        "DRIFTLOOP_ROLLOUT_STEP_WEIGHTS": "[20, 50]",
        "DRIFTLOOP_ROLLOUT_INTERVAL_S": "4",
        "DRIFTLOOP_ROLLOUT_THRESHOLD": "2",
        "DRIFTLOOP_ROLLOUT_PROGRESS_DEADLINE_S": "60",
        "DRIFTLOOP_ROLLOUT_REGISTRY_POLL_S": "1",
        "DRIFTLOOP_ROLLOUT_MIN_REQUESTS": "10",
        # two shared cores: only a gross latency gap between canary and main is a breach
        "DRIFTLOOP_ROLLOUT_MAX_P99_RATIO": "20",
        "DRIFTLOOP_ROLLOUT_P99_SLACK_S": "0.25",
    }


def write_manifest(path: Path, request_log_topic: str, checkout: Path) -> Path:
    text = checkout_path(checkout, CANARY_MANIFEST).read_text()
    path.write_text(text.replace("value: seldon\n", f"value: {request_log_topic}\n"))
    return path


def scrape(url: str | None, client: httpx.Client) -> dict[str, float]:
    """``name{labels}`` -> value of one /metrics page, and ``name`` -> the sum over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    if not url:
        return out
    try:
        text = client.get(url, timeout=2.0).text
    except httpx.HTTPError:
        return out
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


@dataclass
class Progress:
    """What the live display shows; updated from the replayer and the workers' /metrics."""

    phase: str = "starting the loop"
    title: str = "driftloop demo"
    rows_sent: int = 0
    calls: int = 0
    failed_calls: int = 0
    truth_posted: int = 0
    labelled: float = 0
    drift_events: float = 0
    candidates: float = 0
    verdicts: str = "-"
    traffic: str = "-"
    rollout_step: float = 0
    canary_weight: float = 0
    candidate_version: float = 0
    outcomes: str = "-"
    workers_up: str = "-"
    started: float = field(default_factory=time.monotonic)

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.title}: {self.phase} ({time.monotonic() - self.started:.0f} s)")
        table.add_column("what")
        table.add_column("now", justify="right")
        rows = [
            ("workers running", self.workers_up),
            ("events replayed (rows / V2 calls)", f"{self.rows_sent} / {self.calls}"),
            ("failed client calls (non-2xx)", str(self.failed_calls)),
            ("truth values posted (late)", str(self.truth_posted)),
            ("labels joined (read by the trainer)", f"{self.labelled:.0f}"),
            ("drift events", f"{self.drift_events:.0f}"),
            ("candidates registered", f"{self.candidates:.0f}"),
            ("validator verdicts", self.verdicts),
            ("traffic split (control API)", self.traffic),
            (
                "rollout: candidate / step / canary %",
                f"v{self.candidate_version:.0f} / {self.rollout_step:.0f} / {self.canary_weight:.0f}",
            ),
            ("rollouts ended", self.outcomes),
        ]
        for what, now in rows:
            table.add_row(what, now)
        return table


def loop_status(home: Path) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((home / "run" / "loop" / "loop.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"workers": []}
    return status


def metrics_urls(home: Path) -> dict[str, str]:
    return {w["name"]: w["metrics_url"] for w in loop_status(home)["workers"] if w.get("metrics_url")}


class LoopProcess:
    """``driftloop loop run`` as a child process of its own session, stopped by its PID."""

    def __init__(self, home: Path, manifest: Path, env: dict[str, str], models: Path) -> None:
        args = [
            sys.executable, "-m", "driftloop", "loop", "run", "--manifest", str(manifest),
            "--models", str(models), "--runtime-port", "0", "--feedback-port", "0",
            "--rollout", "--backoff-max-s", "4",
        ]  # fmt: skip
        self.home = home
        self.log_path = home / "loop.log"
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                args, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the loop exited with {self.process.returncode}; see {self.log_path}")

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=10)


class Replayer:
    """V2 calls through the ingress; each call's truth posted to the feedback API by Seldon-Puid
    ``TRUTH_DELAY_CALLS`` calls later. A non-2xx answer is counted, never retried or hidden."""

    def __init__(self, ingress: str, api: str, token: str, progress: Progress) -> None:
        self.client = httpx.Client(timeout=30.0)
        self.ingress, self.api = ingress, api
        self.auth = {"Authorization": f"Bearer {token}"}
        self.progress = progress
        self.pending: deque[dict[str, Any]] = deque()
        self.failures: list[str] = []

    def send(self, X: np.ndarray, y: np.ndarray, event_time: np.ndarray) -> None:
        """Rows with their simulated event times (the report splits before / after the change on them)."""
        from driftloop.learning.v2_payload import features_request

        for start in range(0, len(X), ROWS_PER_CALL):
            part = slice(start, start + ROWS_PER_CALL)
            body = features_request(X[part], event_times=[float(t) for t in event_time[part]])
            r = self.client.post(f"{self.ingress}/v2/models/infer", json=body)
            self.progress.calls += 1
            if not 200 <= r.status_code < 300:
                self.progress.failed_calls += 1
                self.failures.append(f"{r.status_code}: {r.text[:200]}")
                continue
            self.progress.rows_sent += len(body["inputs"][0]["data"]) // X.shape[1]
            truth = [float(v) for v in y[start : start + ROWS_PER_CALL]]
            self.pending.append({"request_id": r.headers["Seldon-Puid"], "truth": truth})
        self.post_truth(keep=TRUTH_DELAY_CALLS)

    def post_truth(self, keep: int = 0) -> None:
        records = []
        while len(self.pending) > keep:
            records.append(self.pending.popleft())
        if not records:
            return
        r = self.client.post(f"{self.api}/v1/feedback", json={"records": records}, headers=self.auth)
        if r.status_code != 200:
            raise RuntimeError(f"the feedback API refused the truth: {r.status_code} {r.text[:300]}")
        self.progress.truth_posted += int(r.json()["accepted"])

    def close(self) -> None:
        self.client.close()


def refresh(
    progress: Progress,
    home: Path,
    client: httpx.Client,
    backend: Any,
    deployment: tuple[str, str] = ("plant", "pump-bearing-temp"),
) -> dict[str, float]:
    """Progress from the workers' /metrics and the runtime's control API (``deployment``: namespace, name)."""
    urls = metrics_urls(home)
    running = [w["name"] for w in loop_status(home)["workers"] if w.get("status") == "running"]
    progress.workers_up = ", ".join(running) or "-"
    trainer = scrape(urls.get("trainer"), client)
    monitor = scrape(urls.get("monitor"), client)
    validator = scrape(urls.get("validator"), client)
    rollout = scrape(urls.get("rollout"), client)
    progress.labelled = trainer.get("driftloop_trainer_examples_consumed_total", progress.labelled)
    progress.drift_events = monitor.get("driftloop_monitor_drift_events_total", progress.drift_events)
    progress.candidates = trainer.get("driftloop_trainer_candidates_registered_total", progress.candidates)
    verdicts = {
        k.split("verdict=")[-1].rstrip("}"): v
        for k, v in validator.items()
        if k.startswith("driftloop_validator_verdicts_total{") and "verdict=" in k
    }
    progress.verdicts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(verdicts.items()) if v) or "-"
    progress.rollout_step = rollout.get("driftloop_rollout_step", progress.rollout_step)
    progress.canary_weight = rollout.get("driftloop_rollout_canary_weight", progress.canary_weight)
    progress.candidate_version = rollout.get(
        "driftloop_rollout_candidate_version", progress.candidate_version
    )
    outcomes = {
        k.split("outcome=")[-1].rstrip("}"): v
        for k, v in rollout.items()
        if k.startswith("driftloop_rollout_rollouts_total{") and "outcome=" in k
    }
    progress.outcomes = ", ".join(f"{k} {v:.0f}" for k, v in sorted(outcomes.items()) if v) or "-"
    if backend is not None:
        try:
            state = backend.read(*deployment)
            progress.traffic = ", ".join(f"{p} {w}%" for p, w in state.traffic.items())
        except Exception as exc:  # the control API is down while the runtime restarts: shown, not fatal
            progress.traffic = f"unavailable ({type(exc).__name__})"
    return {k.split("{")[0].split("outcome=")[0]: v for k, v in outcomes.items()}


def wait_until(what: str, check: Callable[[], Any], deadline: float, loop: LoopProcess) -> Any:
    while True:
        found = check()
        if found:
            return found
        loop.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} in time; see the logs in {loop.home / 'run' / 'loop'}")
        time.sleep(0.3)
