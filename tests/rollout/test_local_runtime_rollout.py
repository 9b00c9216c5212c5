"""The controller drives a REAL local runtime (the shipped canary manifest: main / canary on
real MLServer processes, models from a real sqlite MLflow) through its control API: the candidate is
hot-swapped onto the canary at 0 % (the manifest's resting split is main 100 / canary 0),
traffic steps 10 -> 50, then main is hot-swapped and the alias moves; every client request during all of
it answers 200. Ground truth is written to the labelled topic for the canary's rows (the joiner's job,
tested elsewhere); the ops gate reads the real ingress /metrics."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.rollout import FileLease, RolloutController, RolloutSettings, read_history
from driftloop_feedback.rollout.local_backend import LocalControlBackend
from driftloop_feedback.rollout.ops import HttpOpsSource, parse_ingress_metrics
from driftloop_feedback.validate import ValidationSettings
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment

from driftloop.cli.serve import server_env
from driftloop.eventlog import MemoryEventLog
from driftloop.learning.registration import MODEL_NAME, model_pip_requirements
from driftloop.learning.v2_payload import features_request
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread
from tests.rollout.fakes import FakeClock

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pump_canary(trained_state: TrainedState, tmp_path: Path) -> Iterator[RuntimeThread]:
    registry = trained_state.registry
    champion = registry.get_alias(MODEL_NAME, "champion")
    challenger_before = None
    try:
        challenger_before = registry.get_alias(MODEL_NAME, "challenger").version
    except Exception:
        registry.set_alias(MODEL_NAME, "challenger", champion.version)
    mp = pytest.MonkeyPatch()
    mp.setenv("DRIFTLOOP_HOME", str(trained_state.state.resolved_home()))
    deployments = [
        Deployment.from_doc(d) for d in load_manifests(REPO / "manifests/pump-bearing-temp-canary.yaml")
    ]
    settings = RuntimeSettings(
        models_root=REPO / "models", run_dir=tmp_path / "run", mlserver_env=server_env(trained_state.state)
    )
    try:
        with RuntimeThread(LocalRuntime(deployments, settings, MemoryEventLog())) as thread:
            yield thread
    finally:
        mp.undo()  # the session's registry is shared: its aliases go back to where they were
        registry.set_alias(MODEL_NAME, "champion", champion.version)
        registry.set_alias(MODEL_NAME, "challenger", challenger_before or champion.version)


def _clients(url: str, body: dict[str, object], stop: threading.Event, out: list[tuple[int, str]]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            r = client.post(url, json=body, headers={"Seldon-Puid": uuid.uuid4().hex})
            version = r.json().get("parameters", {}).get("model_version", "") if r.status_code == 200 else ""
            out.append((r.status_code, str(version)))


def test_one_rollout_through_the_real_control_api_with_zero_failed_requests(
    pump_canary: RuntimeThread, trained_state: TrainedState, tmp_path: Path
) -> None:
    rt = pump_canary.runtime
    registry = trained_state.registry
    champion = registry.get_alias(MODEL_NAME, "champion").version
    model = registry.load_sklearn_model(f"models:/{MODEL_NAME}/{champion}")
    X, y = trained_state.validation.X, trained_state.validation.y
    candidate = registry.register_sklearn_model(
        MODEL_NAME, model, input_example=X[:5], pip_requirements=model_pip_requirements()
    ).version
    registry.set_version_tags(MODEL_NAME, candidate, {"driftloop.validation.verdict": "pass"})
    registry.set_alias(MODEL_NAME, "challenger", candidate)

    log = MemoryEventLog()
    log.create_topic("driftloop.labelled", 1)
    clock = FakeClock()
    settings = RolloutSettings(
        namespace=rt.deployments[0].namespace,
        deployment=rt.deployments[0].name,
        step_weights=[10, 50],
        interval_s=60.0,
        threshold=1,
        min_requests=20,
        max_p99_ratio=20.0,  # a 2-core machine under the test's load: only a gross latency gap is a breach
        p99_slack_s=0.25,
        state_dir=tmp_path / "rollout",
        poll_timeout_s=0.0,
    )
    backend = LocalControlBackend(f"http://127.0.0.1:{rt.control_port}", rt.token)
    ops = HttpOpsSource(f"{rt.url(rt.deployments[0]).split('/seldon/')[0]}/metrics", settings.deployment)
    lease = FileLease(settings.lease_path(), settings.key, settings.lease_ttl_s, clock)
    # the candidate is the champion's model registered again: equal losses pass a non-inferiority margin
    validation = ValidationSettings(mode="non-inferiority", margin=1.0, loss_bound=10.0, min_examples=20)
    controller = RolloutController(settings, backend, registry, log, lease, ops, validation, clock=clock)

    body = features_request(X[:4])
    url = rt.url(rt.deployments[0]) + "/v2/models/infer"
    calls: list[tuple[int, str]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_clients, args=(url, body, stop, calls), daemon=True) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    producer = log.producer()
    served = np.asarray(model.predict(X[:400]))

    def canary_truth(n: int, start: int) -> None:
        for i in range(start, start + n):
            e = LabelledExample(
                f"t{i}:0",
                f"t{i}",
                0,
                tuple(map(float, X[i])),
                float(served[i]),
                float(y[i]),
                "canary",
                str(candidate),
                float(i),
                float(i) + 1,
                "request",
            )
            producer.send("driftloop.labelled", e.encode())
        producer.flush()

    def wait_for_calls(n: int) -> None:
        target = len(calls) + n
        deadline = time.monotonic() + 60
        while len(calls) < target:
            assert time.monotonic() < deadline, "the clients stopped getting answers"
            time.sleep(0.05)

    try:
        wait_for_calls(50)
        controller.tick(clock.t)  # candidate swapped onto the canary at 0; step 10 %
        state = backend.read(settings.namespace, settings.deployment)
        assert state.traffic == {"main": 90, "canary": 10}
        assert state.model_uri("canary", "bearing-temp") == f"models:/{MODEL_NAME}/{candidate}"
        wait_for_calls(300)
        canary_truth(150, 0)
        controller.tick(clock.advance(60))  # a pass at 10 % -> 50 %
        assert backend.read(settings.namespace, settings.deployment).traffic == {"main": 50, "canary": 50}
        wait_for_calls(200)
        canary_truth(150, 150)
        controller.tick(clock.advance(60))  # a pass at 50 % -> promotion
        wait_for_calls(100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        controller.stop()
        backend.close()
        ops.close()

    decisions = [e.decision for e in read_history(log, "driftloop.rollouts", settings.key)]
    # the shipped manifest rests at main 100 / canary 0: no orphan split to reset first
    assert decisions == ["started", "step", "step", "promoting", "promoted"], decisions
    reader = LocalControlBackend(f"http://127.0.0.1:{rt.control_port}", rt.token)
    try:
        state = reader.read(settings.namespace, settings.deployment)
    finally:
        reader.close()
    assert state.traffic == {"main": 100, "canary": 0}
    assert state.model_uri("main", "bearing-temp") == f"models:/{MODEL_NAME}/{candidate}"
    assert registry.get_alias(MODEL_NAME, "champion").version == candidate
    assert registry.version_tags(MODEL_NAME, candidate)["driftloop.rollout.status"] == "promoted"
    failures = [c for c in calls if c[0] != 200]
    print(f"rollout on the real runtime: {len(calls)} client calls, versions {sorted({c[1] for c in calls})}")
    assert failures == [], f"{len(failures)} of {len(calls)} client requests failed: {failures[:3]}"
    assert str(candidate) in {c[1] for c in calls} and str(champion) in {c[1] for c in calls}
    step = next(e for e in read_history(log, "driftloop.rollouts", settings.key) if e.ops is not None)
    assert step.ops is not None and step.ops["canary_requests"] > 0 and step.ops["breach"] is None
    counts = parse_ingress_metrics(httpx.get(ops.url).text, settings.deployment)
    assert counts["canary"].requests > 0 and counts["main"].requests > 0
