"""A bad candidate and sparse ground truth, with real processes: the same set-up as
test_controller_sigkill.py (the shipped canary manifest on real MLServers, the real control API, the
session's sqlite MLflow and embedded event log, the controller as a real `driftloop rollout run` process).

- A candidate whose forecasts are the champion's + SHIFT, tagged as if it had passed validation, is put on
  the canary; its own labelled rows fail the ground-truth gate at the first step, so it is rolled back and
  never holds more than the first step's weight (sampled on the control API throughout, and in every
  decision event); the champion stays, traffic ends main 100 / canary 0, no client request fails.
- With only a handful of labelled rows (fewer than the test's minimum) the rollout waits (inconclusive
  checks, never a failed one), then ends rolled back on its progress deadline; nothing is promoted."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.rollout import RolloutEvent, read_history
from driftloop_feedback.rollout.backend import DeploymentState
from driftloop_feedback.rollout.local_backend import LocalControlBackend, local_run_dir
from driftloop_graphs.run_state import RunState
from driftloop_graphs.spec import Deployment

from driftloop.eventlog import Producer
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.learning.registration import MODEL_NAME, model_pip_requirements
from driftloop.learning.v2_payload import features_request, output_values
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread
from tests.rollout.test_local_runtime_rollout import pump_canary  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

NODE = "bearing-temp"
SHIFT = 5.0  # degrees C added to every forecast of the bad candidate
END_DECISIONS = ("promoted", "rolled_back", "aborted")


@dataclass
class Calls:
    """What the clients got: (status, model version, forecasts) per request."""

    got: list[tuple[int, str, list[float]]] = field(default_factory=list)

    def failures(self) -> list[tuple[int, str, list[float]]]:
        return [c for c in self.got if c[0] != 200]

    def forecasts(self, version: int) -> list[list[float]]:
        return [c[2] for c in self.got if c[0] == 200 and c[1] == str(version)]


def _client(url: str, body: dict[str, Any], stop: threading.Event, calls: Calls) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            r = client.post(url, json=body, headers={"Seldon-Puid": uuid.uuid4().hex})
            if r.status_code != 200:
                calls.got.append((r.status_code, "", []))
                continue
            answer = r.json()
            version = str(answer.get("parameters", {}).get("model_version", ""))
            calls.got.append((200, version, [float(v) for v in output_values(answer)["prediction"]]))


@dataclass
class Rollout:
    """One `driftloop rollout run` process against the pump_canary runtime, and what the test watches."""

    trained: TrainedState
    runtime: RuntimeThread
    tmp: Path
    topic: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")  # this test's topics' prefix
    weights_seen: list[int] = field(default_factory=list)
    calls: Calls = field(default_factory=Calls)

    def __post_init__(self) -> None:
        rt = self.runtime.runtime
        self.dep: Deployment = rt.deployments[0]
        self.ingress = rt.url(self.dep).split("/seldon/")[0]
        self.log: EmbeddedEventLog = EmbeddedEventLog(self.trained.state.eventlog_dir())
        self.labelled, self.rollouts = f"{self.topic}.labelled", f"{self.topic}.rollouts"
        for topic in (self.labelled, self.rollouts):
            self.log.create_topic(topic, 1)
        self.backend: LocalControlBackend = LocalControlBackend(
            f"http://127.0.0.1:{rt.control_port}", rt.token
        )

    def env(self, **rollout: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DRIFTLOOP_HOME": str(self.trained.state.resolved_home()),
            "DRIFTLOOP_ROLLOUT_NAMESPACE": self.dep.namespace,
            "DRIFTLOOP_ROLLOUT_DEPLOYMENT": self.dep.name,
            "DRIFTLOOP_ROLLOUT_STEP_WEIGHTS": "[10, 50]",
            "DRIFTLOOP_ROLLOUT_INTERVAL_S": "2",
            "DRIFTLOOP_ROLLOUT_MIN_REQUESTS": "20",
            "DRIFTLOOP_ROLLOUT_MAX_P99_RATIO": "20",  # 2 cores under load: only a gross latency gap breaches
            "DRIFTLOOP_ROLLOUT_P99_SLACK_S": "0.25",
            "DRIFTLOOP_ROLLOUT_METRICS_URL": f"{self.ingress}/metrics",
            "DRIFTLOOP_ROLLOUT_LABELLED_TOPIC": self.labelled,
            "DRIFTLOOP_ROLLOUT_ROLLOUTS_TOPIC": self.rollouts,
            "DRIFTLOOP_ROLLOUT_STATE_DIR": str(self.tmp / "rollout"),
            "DRIFTLOOP_ROLLOUT_REGISTRY_POLL_S": "0.5",
            # lenient on purpose (the SIGKILL test's): a re-registered champion passes, a bad model does not
            "DRIFTLOOP_VALIDATION_MODE": "non-inferiority",
            "DRIFTLOOP_VALIDATION_MARGIN": "1.0",
            "DRIFTLOOP_VALIDATION_LOSS_BOUND": "10.0",
            "DRIFTLOOP_VALIDATION_MIN_EXAMPLES": "20",
            **{f"DRIFTLOOP_ROLLOUT_{k.upper()}": v for k, v in rollout.items()},
        }
        env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
        env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
        return env

    def state(self) -> DeploymentState:
        return self.backend.read(self.dep.namespace, self.dep.name)

    def events(self) -> list[RolloutEvent]:
        return read_history(self.log, self.rollouts, f"{self.dep.namespace}/{self.dep.name}")

    def ended(self) -> bool:
        return any(e.decision in END_DECISIONS for e in self.events())

    @contextmanager
    def running(self, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
        """Clients calling the ingress, a sampler of the control API's canary weight, and the controller;
        all stopped (the controller by its PID) and every client and log closed, whatever happens."""
        rt = self.runtime.runtime
        run_dir = local_run_dir(self.trained.state)  # where `driftloop rollout run` finds the control API
        run_dir.mkdir(parents=True, exist_ok=True)
        port = int(self.ingress.rsplit(":", 1)[1])
        RunState(os.getpid(), port, rt.control_port, "127.0.0.1", "127.0.0.1", "canary", 0.0).write(
            run_dir, rt.token
        )
        stop = threading.Event()
        url = rt.url(self.dep) + "/v2/models/infer"
        body = features_request(self.trained.validation.X[:4])
        threads = [
            threading.Thread(target=_client, args=(url, body, stop, self.calls), daemon=True)
            for _ in range(2)
        ]
        threads.append(threading.Thread(target=self._sample, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        output = (self.tmp / "controller.log").open("wb")
        command = [sys.executable, "-m", "driftloop", "rollout", "run", "--tick-s", "0.5"]
        proc = subprocess.Popen(command, env=env, cwd=self.tmp, stdout=output, stderr=subprocess.STDOUT)
        try:
            yield proc
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, (self.tmp / "controller.log").read_text()[-3000:]
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            output.close()
            RunState.clear(run_dir)

    def _sample(self, stop: threading.Event) -> None:
        """The canary's weight on the control API every 0.2 s (its own client: httpx clients are not
        shared across threads here)."""
        rt = self.runtime.runtime
        reader = LocalControlBackend(f"http://127.0.0.1:{rt.control_port}", rt.token)
        try:
            while not stop.is_set():
                self.weights_seen.append(reader.read(self.dep.namespace, self.dep.name).weight("canary"))
                stop.wait(0.2)
        finally:
            reader.close()

    def wait(
        self, what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert proc.poll() is None, f"the controller exited ({proc.returncode}) while waiting for {what}"
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s: {self.events()}"
            time.sleep(0.2)

    def send_truth(
        self,
        producer: Producer,
        X: np.ndarray,
        served: np.ndarray,
        y: np.ndarray,
        version: int,
        first: int,
        n: int,
    ) -> None:
        """``n`` labelled examples of the canary's rows (as the joiner writes them), ids from ``first``."""
        for i in range(first, first + n):
            j = i % len(served)
            e = LabelledExample(
                f"{self.topic}-{i}:0", f"{self.topic}-{i}", 0, tuple(map(float, X[j])), float(served[j]),
                float(y[j]), "canary", str(version), float(i), float(i) + 1, "request",
            )  # fmt: skip
            producer.send(self.labelled, e.encode())
        producer.flush()

    def close(self) -> None:
        self.backend.close()
        self.log.close()


@pytest.fixture
def rollout(
    trained_state: TrainedState,
    pump_canary: RuntimeThread,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Rollout]:
    r = Rollout(trained_state, pump_canary, tmp_path)
    try:
        yield r
    finally:
        r.close()  # also on a failed assertion: a client left to the GC warns in a later test


def _register_candidate(trained: TrainedState, model: Any) -> int:
    """``model`` as a new version that 'passed validation', set as the challenger."""
    registry = trained.registry
    X = trained.validation.X
    version = registry.register_sklearn_model(
        MODEL_NAME, model, input_example=X[:5], pip_requirements=model_pip_requirements()
    ).version
    registry.set_version_tags(MODEL_NAME, version, {"driftloop.validation.verdict": "pass"})
    registry.set_alias(MODEL_NAME, "challenger", version)
    return version


@pytest.mark.timeout(600)  # real processes on 2 shared cores
def test_a_bad_candidate_that_passed_validation_is_rolled_back_at_the_first_step(
    rollout: Rollout, trained_state: TrainedState
) -> None:
    registry = trained_state.registry
    champion = registry.get_alias(MODEL_NAME, "champion").version
    model = registry.load_sklearn_model(f"models:/{MODEL_NAME}/{champion}")
    X, y = trained_state.validation.X, trained_state.validation.y
    # the champion with its target scaler's mean moved: every forecast is the champion's + SHIFT, from an
    # estimator class the MLServer runtime already loads (driftloop_servers.estimators)
    bad = copy.deepcopy(model)
    bad.y_scaler_.mean_ = bad.y_scaler_.mean_ + SHIFT
    rows = min(600, len(X))
    served, honest = np.asarray(bad.predict(X[:rows])), np.asarray(model.predict(X[:rows]))
    np.testing.assert_allclose(served - honest, SHIFT)
    assert np.abs(served - y[:rows]).mean() > np.abs(honest - y[:rows]).mean() + 1.0  # clearly worse
    main_uri = rollout.state().model_uri("main", NODE)

    env = rollout.env(threshold="2", progress_deadline_s="300")
    producer = rollout.log.producer()
    try:
        with rollout.running(env) as proc:
            candidate = _register_candidate(trained_state, bad)  # while the controller starts up
            rollout.wait("canary weight > 0", lambda: rollout.state().weight("canary") > 0, proc, 180)
            # Truth keeps arriving until the rollout ends: rows that arrive while a step's test has already
            # concluded are not carried over, so a fixed budget could leave a slow check waiting forever.
            sent, deadline = 0, time.monotonic() + 360
            while not rollout.ended():
                assert proc.poll() is None, f"the controller exited ({proc.returncode})"
                assert time.monotonic() < deadline, [e.decision for e in rollout.events()]
                rollout.send_truth(producer, X, served, y, candidate, sent, 20)
                sent += 20
                time.sleep(0.5)
        final = rollout.state()
    finally:
        producer.close()
    events = rollout.events()
    calls = rollout.calls

    decisions = [e.decision for e in events if e.decision != "check"]
    seen = sorted(set(rollout.weights_seen))
    print(f"bad candidate: {decisions}; {sent} labelled rows sent; {len(calls.got)} client calls")
    print(f"canary weights on the control API: {seen} in {len(rollout.weights_seen)} samples")
    assert decisions == ["started", "step", "rolling_back", "rolled_back"], decisions
    failed = [e for e in events if e.decision == "check" and e.result == "failed"]
    assert len(failed) == 1 and failed[0].reason.startswith("ground truth:"), failed  # threshold 2
    assert all(e.result == "inconclusive" for e in events if e.decision == "check" and e not in failed)
    end = events[-1]
    assert end.reason.startswith("2 failed checks (threshold 2); last: ground truth:"), end.reason
    gate = next(e for e in events if e.decision == "rolling_back").gate
    assert gate is not None and gate["verdict"] == "fail", gate
    # never more than the first step's traffic: on the control API while it ran, and in every decision
    assert max(rollout.weights_seen) == 10, rollout.weights_seen
    assert {e.weight for e in events} <= {0, 10}, [(e.decision, e.weight) for e in events]
    # rolled back: canary to 0, the champion untouched, the candidate rejected with the reason
    assert final.traffic == {"main": 100, "canary": 0}, final.traffic
    assert final.model_uri("main", NODE) == main_uri
    assert registry.get_alias(MODEL_NAME, "champion").version == champion
    tags = registry.version_tags(MODEL_NAME, candidate)
    assert tags["driftloop.rollout.status"] == "rejected", tags
    assert "ground truth" in tags["driftloop.rollout.reason"], tags
    # the canary really served the shifted model, main the champion, and no request failed
    assert calls.failures() == [], f"{len(calls.failures())} of {len(calls.got)} requests failed"
    by_candidate, by_champion = calls.forecasts(candidate), calls.forecasts(champion)
    assert by_candidate and by_champion, sorted({c[1] for c in calls.got})
    np.testing.assert_allclose(by_candidate, [served[:4]] * len(by_candidate))
    np.testing.assert_allclose(by_champion, [honest[:4]] * len(by_champion))


@pytest.mark.timeout(600)  # real processes on 2 shared cores
def test_sparse_ground_truth_waits_then_fails_on_the_progress_deadline(
    rollout: Rollout, trained_state: TrainedState
) -> None:
    registry = trained_state.registry
    champion = registry.get_alias(MODEL_NAME, "champion").version
    model = registry.load_sklearn_model(f"models:/{MODEL_NAME}/{champion}")
    X, y = trained_state.validation.X, trained_state.validation.y
    served = np.asarray(model.predict(X[:5]))
    main_uri = rollout.state().model_uri("main", NODE)
    # fewer labelled rows than DRIFTLOOP_VALIDATION_MIN_EXAMPLES (20). The step's clock starts when its
    # tick starts, before the champion is loaded and the candidate swapped onto the canary (10 s seen at a
    # load average of 20): the deadline leaves room for that, for the rows to be read and a check to wait.
    deadline_s, labelled = 25.0, 5

    env = rollout.env(threshold="1", progress_deadline_s=str(deadline_s))
    producer = rollout.log.producer()
    try:
        with rollout.running(env) as proc:
            # a candidate that would pass given the truth (the champion registered again): only truth is
            # missing; registered while the controller starts up
            candidate = _register_candidate(trained_state, model)
            rollout.wait("canary weight > 0", lambda: rollout.state().weight("canary") > 0, proc, 180)
            rollout.send_truth(producer, X, served, y, candidate, 0, labelled)  # the step's only truth
            rollout.wait("the end of the rollout", rollout.ended, proc, 360)
        final = rollout.state()
    finally:
        producer.close()
    events = rollout.events()
    calls = rollout.calls

    decisions = [e.decision for e in events if e.decision != "check"]
    checks = [e for e in events if e.decision == "check"]
    print(f"sparse truth: {decisions} with {len(checks)} checks; {len(calls.got)} client calls")
    assert decisions == ["started", "step", "rolling_back", "rolled_back"], decisions
    # it waited: inconclusive checks (threshold 1: a single failed check would have rolled it back)
    assert checks and all(e.result == "inconclusive" for e in checks), checks
    assert all(e.weight == 10 and e.failed_checks == 0 for e in checks), checks
    step = next(e for e in events if e.decision == "step")
    end = events[-1]
    assert end.at - step.at >= deadline_s, (step.at, end.at)
    assert end.reason.startswith(f"progress deadline: {labelled} paired labelled examples in "), end.reason
    assert end.reason.endswith("too little ground truth"), end.reason
    gate = next(e for e in events if e.decision == "rolling_back").gate
    assert gate is not None and gate["verdict"] == "inconclusive" and gate["n"] == labelled, gate
    # nothing promoted: the champion, main's model and the split as before the rollout
    assert max(rollout.weights_seen) == 10 and {e.weight for e in events} <= {0, 10}
    assert final.traffic == {"main": 100, "canary": 0}, final.traffic
    assert final.model_uri("main", NODE) == main_uri
    assert registry.get_alias(MODEL_NAME, "champion").version == champion
    tags = registry.version_tags(MODEL_NAME, candidate)
    assert tags["driftloop.rollout.status"] == "rejected", tags
    assert tags["driftloop.rollout.reason"].startswith("progress deadline"), tags
    assert calls.failures() == [], f"{len(calls.failures())} of {len(calls.got)} requests failed"
