"""SIGKILL of the controller mid-rollout, then a restart, with real processes: a REAL local runtime (the
shipped canary manifest on real MLServers, the same set-up as test_local_runtime_rollout.py), the
controller as a real `driftloop rollout run` process on the embedded event log and the sqlite MLflow of
the session's home. The first controller puts the candidate on the canary and steps it to 10 %; it is
killed there (no graceful stop: the split stays, without an owner). A second controller, started once the
dead one's lease expired, reads the deployment's real state and its decisions topic, resumes at 10 %, and
promotes on the canary's ground truth; traffic ends at main 100 and no client request failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.rollout import RolloutEvent, read_history
from driftloop_feedback.rollout.backend import DeploymentState
from driftloop_feedback.rollout.local_backend import LocalControlBackend, local_run_dir
from driftloop_graphs.run_state import RunState

from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.learning.registration import MODEL_NAME, model_pip_requirements
from driftloop.learning.v2_payload import features_request
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread
from tests.rollout.test_local_runtime_rollout import _clients, pump_canary  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

LEASE_TTL_S = 3.0
LABELLED, ROLLOUTS = "sigkill.labelled", "sigkill.rollouts"


def _wait(what: str, done: Callable[[], bool], timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert proc.poll() is None, f"the controller exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.2)


@pytest.mark.timeout(600)  # real processes on 2 shared cores: the restarted rollout took > 120 s in CI
def test_a_killed_controller_leaves_a_split_that_the_next_one_resumes_and_finishes(
    pump_canary: RuntimeThread,  # noqa: F811
    trained_state: TrainedState,
    tmp_path: Path,
) -> None:
    rt = pump_canary.runtime
    dep = rt.deployments[0]
    registry = trained_state.registry
    home = trained_state.state.resolved_home()
    champion = registry.get_alias(MODEL_NAME, "champion").version
    model = registry.load_sklearn_model(f"models:/{MODEL_NAME}/{champion}")
    X, y = trained_state.validation.X, trained_state.validation.y
    candidate = registry.register_sklearn_model(
        MODEL_NAME, model, input_example=X[:5], pip_requirements=model_pip_requirements()
    ).version
    registry.set_version_tags(MODEL_NAME, candidate, {"driftloop.validation.verdict": "pass"})
    registry.set_alias(MODEL_NAME, "challenger", candidate)

    # `driftloop rollout run` finds the runtime's control API where `driftloop up` records it
    run_dir = local_run_dir(trained_state.state)
    run_dir.mkdir(parents=True, exist_ok=True)
    ingress = rt.url(dep).split("/seldon/")[0]
    port = int(ingress.rsplit(":", 1)[1])
    RunState(os.getpid(), port, rt.control_port, "127.0.0.1", "127.0.0.1", "canary", 0.0).write(
        run_dir, rt.token
    )
    log = EmbeddedEventLog(trained_state.state.eventlog_dir())
    for topic in (LABELLED, ROLLOUTS):
        log.create_topic(topic, 1)
    env = {
        **os.environ,
        "DRIFTLOOP_HOME": str(home),
        "DRIFTLOOP_ROLLOUT_NAMESPACE": dep.namespace,
        "DRIFTLOOP_ROLLOUT_DEPLOYMENT": dep.name,
        "DRIFTLOOP_ROLLOUT_STEP_WEIGHTS": "[10, 50]",
        "DRIFTLOOP_ROLLOUT_INTERVAL_S": "3",
        "DRIFTLOOP_ROLLOUT_THRESHOLD": "5",
        "DRIFTLOOP_ROLLOUT_MIN_REQUESTS": "20",
        "DRIFTLOOP_ROLLOUT_MAX_P99_RATIO": "20",  # 2 cores under load: only a gross latency gap breaches
        "DRIFTLOOP_ROLLOUT_P99_SLACK_S": "0.25",
        "DRIFTLOOP_ROLLOUT_METRICS_URL": f"{ingress}/metrics",
        "DRIFTLOOP_ROLLOUT_LABELLED_TOPIC": LABELLED,
        "DRIFTLOOP_ROLLOUT_ROLLOUTS_TOPIC": ROLLOUTS,
        "DRIFTLOOP_ROLLOUT_LEASE_TTL_S": str(LEASE_TTL_S),
        "DRIFTLOOP_ROLLOUT_STATE_DIR": str(tmp_path / "rollout"),
        "DRIFTLOOP_ROLLOUT_REGISTRY_POLL_S": "0.5",
        # the candidate is the champion registered again: equal losses pass a non-inferiority margin
        "DRIFTLOOP_VALIDATION_MODE": "non-inferiority",
        "DRIFTLOOP_VALIDATION_MARGIN": "1.0",
        "DRIFTLOOP_VALIDATION_LOSS_BOUND": "10.0",
        "DRIFTLOOP_VALIDATION_MIN_EXAMPLES": "20",
    }
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "driftloop", "rollout", "run", "--tick-s", "0.5"]

    backend = LocalControlBackend(f"http://127.0.0.1:{rt.control_port}", rt.token)

    def state() -> DeploymentState:
        return backend.read(dep.namespace, dep.name)

    def events() -> list[RolloutEvent]:
        return read_history(log, ROLLOUTS, f"{dep.namespace}/{dep.name}")

    url = rt.url(dep) + "/v2/models/infer"
    calls: list[tuple[int, str]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_clients, args=(url, features_request(X[:4]), stop, calls), daemon=True)
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    procs: list[subprocess.Popen[bytes]] = []
    outputs = [(tmp_path / f"controller-{i}.log").open("wb") for i in range(2)]
    try:
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=outputs[0], stderr=subprocess.STDOUT)
        procs.append(first)
        _wait("canary weight > 0", lambda: state().weight("canary") > 0, 180, first)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert first.returncode == -signal.SIGKILL

        split = state()  # killed: nobody set the canary back, the split has no owner
        assert split.traffic == {"main": 90, "canary": 10}, split.traffic
        assert split.model_uri("canary", "bearing-temp") == f"models:/{MODEL_NAME}/{candidate}"
        before_kill = events()
        assert [e.decision for e in before_kill][:1] == ["started"], before_kill
        time.sleep(LEASE_TTL_S + 0.5)  # the dead holder's lease expires; a new controller may take it

        second = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=outputs[1], stderr=subprocess.STDOUT)
        procs.append(second)
        _wait("a decision after the restart", lambda: len(events()) > len(before_kill), 120, second)
        after = events()[len(before_kill) :]
        assert after[0].decision == "resumed" and after[0].weight == 10, after[0]
        assert after[0].candidate == candidate and after[0].champion == champion, after[0]
        assert state().traffic == {"main": 90, "canary": 10}  # resumed where it was, not reset

        # ground truth for the canary's rows at each weight: the resumed rollout passes 10 % and 50 %
        # Truth keeps arriving until the rollout ends (as it does in a plant): rows that arrive while a
        # step's test has already concluded are not carried to the next step, so a fixed budget sent
        # faster than a loaded controller checks would leave the 50 % step waiting for truth forever.
        producer = log.producer()
        rows = min(600, len(X))
        served = np.asarray(model.predict(X[:rows]))
        sent = 0

        def canary_truth(n: int) -> None:
            nonlocal sent
            for i in range(sent, sent + n):
                j = i % rows
                e = LabelledExample(
                    f"k{i}:0", f"k{i}", 0, tuple(map(float, X[j])), float(served[j]), float(y[j]),
                    "canary", str(candidate), float(i), float(i) + 1, "request",
                )  # fmt: skip
                producer.send(LABELLED, e.encode())
            producer.flush()
            sent += n

        def ended() -> bool:
            return any(
                e.decision in ("promoted", "rolled_back", "aborted") for e in events()[len(before_kill) :]
            )

        deadline = time.monotonic() + 360
        while not ended():
            assert second.poll() is None, f"the second controller exited ({second.returncode})"
            assert time.monotonic() < deadline, [e.decision for e in events()]
            canary_truth(20)
            time.sleep(1.0)
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
        restarted = events()[len(before_kill) :]
        final = state()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        for out in outputs:
            out.close()
        RunState.clear(run_dir)
        backend.close()  # also on a failed assertion: a client left to the GC warns in a later test
        log.close()

    waits = [e for e in restarted if e.decision == "check"]
    assert all(e.result == "inconclusive" for e in waits), waits  # waiting for truth, no failed check
    decisions = [e.decision for e in restarted if e.decision != "check"]
    print(f"after SIGKILL + restart: {decisions}; {len(calls)} client calls")
    assert decisions == ["resumed", "step", "promoting", "promoted"], decisions
    assert final.traffic == {"main": 100, "canary": 0}, final.traffic  # never left split
    assert final.model_uri("main", "bearing-temp") == f"models:/{MODEL_NAME}/{candidate}"
    assert registry.get_alias(MODEL_NAME, "champion").version == candidate
    failures = [c for c in calls if c[0] != 200]
    assert failures == [], f"{len(failures)} of {len(calls)} client requests failed: {failures[:3]}"
