"""Issue 13's integration test: ``driftloop loop run`` starts the real local runtime (the shipped pump
graph on real MLServer processes, request log in Seldon's format) and the feedback API, joiner, drift
monitor, trainer and validator, each a child process through its own CLI; on the embedded log and on a
real Kafka broker. Simulated telemetry is replayed through the ingress, its ground truth is posted to
the feedback API by Seldon-Puid; a regime change (every pump's bearing temperature +6 C from one moment
on, as after a seal replacement) must lead, with no manual step, to a drift event on the drift topic, a
candidate registered with alias ``challenger`` and the trainer's tags, and a ``pass`` verdict from the
validator. Every wait is bounded; the loop is stopped by PID and no worker is left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from driftloop.eventlog import EventLog
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.kafka import KafkaEventLog
from driftloop.registry import MlflowRegistry, RegistryError
from driftloop.settings import StateSettings
from tests.fixtures.kafka import quick_kafka_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MODEL = "pump-bearing-temp"
VERDICT = "driftloop.validation.verdict"
SHIFT_C = 6.0
ROWS_PER_CALL = 25
PRE_ROWS = 600
POST_CHUNK, POST_CHUNK_S = 100, 0.7
DEADLINE_S = 240.0


@dataclass(frozen=True)
class Stream:
    """Feature rows and their truth 30 min later, before and after the regime change (each shuffled in
    time, so that a window of the monitor is a sample of the whole day, as its reference is)."""

    training: Any  # TrainingResult of the champion, trained on rows before the change
    pre_X: np.ndarray
    pre_y: np.ndarray
    post_X: np.ndarray
    post_y: np.ndarray


@pytest.fixture(scope="module")
def stream() -> Stream:
    from driftloop.learning.features import FeatureSpec, build_features
    from driftloop.learning.training import TrainingSettings, train
    from driftloop.telemetry import SimulatorSettings, simulate_fleet

    settings = SimulatorSettings(
        assets=5,
        days=12,
        seed=3,
        wear_probability=0,
        regime_changes_per_asset=0,
        spikes_per_day=0,
        stuck_per_day=0,
        dropouts_per_day=0,
    )
    telemetry = simulate_fleet(settings).telemetry
    change = settings.start_time + 8 * 86_400.0
    training = train(telemetry[telemetry.event_time < change], FeatureSpec(), TrainingSettings(epochs=5))
    shifted = telemetry.copy()
    shifted.loc[shifted.event_time >= change, "bearing_temp_c"] += SHIFT_C
    rows = build_features(shifted, FeatureSpec())
    rng = np.random.default_rng(0)
    # traffic before the change from the days the champion's drift reference was drawn from (the
    # simulator's weather wanders over days: later days drift from the reference on their own)
    before = rng.permutation(np.flatnonzero(rows.event_time < settings.start_time + 6 * 86_400.0))
    before = before[:PRE_ROWS]
    after = rng.permutation(np.flatnonzero(rows.event_time >= change + 3600))
    return Stream(training, rows.X[before], rows.y[before], rows.X[after], rows.y[after])


@dataclass
class Backend:
    name: str
    log: EventLog
    env: dict[str, str]


@pytest.fixture(params=["embedded", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    home = tmp_path / "home"
    env = {"DRIFTLOOP_HOME": str(home)}
    if request.param == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        env["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        log: EventLog = KafkaEventLog(bootstrap, quick_kafka_settings())
    else:
        log = EmbeddedEventLog(home / "eventlog")
    try:
        yield Backend(request.param, log, env)
    finally:
        log.close()


def topics_and_settings(suffix: str) -> tuple[dict[str, str], dict[str, str]]:
    """Unique topics (the Kafka broker is shared by the run) and worker settings for a quick loop."""
    topics = {
        "request_log": f"seldon.{suffix}",
        "keyed_log": f"requestlog.{suffix}",
        "feedback": f"feedback.{suffix}",
        "telemetry": f"telemetry.{suffix}",
        "predictions": f"predictions.{suffix}",
        "labelled": f"labelled.{suffix}",
        "drift": f"drift.{suffix}",
    }
    env = {
        **{f"DRIFTLOOP_JOINER_{k.upper()}_TOPIC": v for k, v in topics.items() if k != "drift"},
        "DRIFTLOOP_JOINER_GROUP_ID": f"joiner-{suffix}",
        "DRIFTLOOP_JOINER_PARTITIONS": "2",
        "DRIFTLOOP_JOINER_CHECKPOINT_INTERVAL_S": "0.3",
        "DRIFTLOOP_FEEDBACK_FEEDBACK_TOPIC": topics["feedback"],
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
        # the first cut comes after the change, the next not before the validator has judged it
        "DRIFTLOOP_TRAINER_POLICY__MIN_INTERVAL_S": "30",
        "DRIFTLOOP_TRAINER_POLICY__DRIFT_MIN_EXAMPLES": "150",
        "DRIFTLOOP_TRAINER_POLICY__DEGRADATION_ENABLED": "false",  # the cut this test wants is drift's
        "DRIFTLOOP_VALIDATOR_LABELLED_TOPIC": topics["labelled"],
        "DRIFTLOOP_VALIDATOR_GROUP_ID": f"validator-{suffix}",
        "DRIFTLOOP_VALIDATOR_REGISTRY_POLL_S": "0.5",
        "DRIFTLOOP_VALIDATOR_TOPIC_RETRY_S": "1",
        "DRIFTLOOP_VALIDATION_LOSS_BOUND": "10",
    }
    return topics, env


def write_manifest(path: Path, request_log_topic: str) -> Path:
    text = (REPO / "manifests" / "pump-bearing-temp.yaml").read_text()
    assert "value: seldon\n" in text
    path.write_text(text.replace("value: seldon\n", f"value: {request_log_topic}\n"))
    return path


def loop_status(home: Path) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((home / "run" / "loop" / "loop.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {"workers": []}
    return status


def worker(home: Path, name: str) -> dict[str, Any]:
    return next((w for w in loop_status(home)["workers"] if w["name"] == name), {})


def logs_tail(home: Path) -> str:
    out = []
    for path in sorted((home / "run" / "loop").glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        out.append(f"== {path.name}\n" + "\n".join(lines[-12:]))
    return "\n".join(out)


class Replay:
    """Sends rows through the ingress in V2 calls and their truth to the feedback API by Seldon-Puid."""

    def __init__(self, ingress: str, api: str, token: str) -> None:
        self.client = httpx.Client(timeout=30.0)
        self.ingress, self.api = ingress, api
        self.auth = {"Authorization": f"Bearer {token}"}
        self.rows_sent = 0

    def send(self, X: np.ndarray, y: np.ndarray) -> None:
        from driftloop.learning.v2_payload import features_request

        truths = []
        for start in range(0, len(X), ROWS_PER_CALL):
            body = features_request(X[start : start + ROWS_PER_CALL])
            r = self.client.post(f"{self.ingress}/v2/models/infer", json=body)
            assert r.status_code == 200, r.text
            truth = [float(v) for v in y[start : start + ROWS_PER_CALL]]
            truths.append({"request_id": r.headers["Seldon-Puid"], "truth": truth})
        r = self.client.post(f"{self.api}/v1/feedback", json={"records": truths}, headers=self.auth)
        assert r.status_code == 200 and r.json()["accepted"] == len(X), r.text
        self.rows_sent += len(X)

    def close(self) -> None:
        self.client.close()


def wait_for(what: str, check: Any, deadline: float, loop: subprocess.Popen[bytes], home: Path) -> Any:
    while True:
        found = check()
        if found:
            return found
        assert loop.poll() is None, (
            f"the loop exited with {loop.returncode} waiting for {what}\n{logs_tail(home)}"
        )
        assert time.monotonic() < deadline, f"no {what} in time\n{logs_tail(home)}"
        time.sleep(0.3)


def drift_events(consumer: Any, seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen.extend(json.loads(r.value) for r in consumer.poll(timeout_s=0.2, max_records=1000))
    return [e for e in seen if e.get("is_drift")]


def test_loop_regime_change_to_drift_candidate_and_pass(
    backend: Backend, stream: Stream, tmp_path: Path
) -> None:
    from driftloop.learning.registration import publish

    home = tmp_path / "home"
    started = time.monotonic()
    registry = MlflowRegistry.from_state(StateSettings(home=home, mlflow_tracking_uri=None))
    champion = publish(stream.training, registry).model.version
    topics, settings = topics_and_settings(uuid.uuid4().hex[:8])
    for name, topic in topics.items():  # co-partitioned joiner topics; the drift topic read by the trainer
        backend.log.create_topic(topic, 1 if name == "drift" else 2)
    manifest = write_manifest(tmp_path / "pump.yaml", topics["request_log"])
    env = {**os.environ, **backend.env, **settings}
    env.pop("DRIFTLOOP_MLFLOW_TRACKING_URI", None)
    if backend.name == "embedded":
        env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("DRIFTLOOP_FEEDBACK_TOKEN", None)  # the loop makes one and writes it to feedback.token
    args = ["--manifest", str(manifest), "--models", str(REPO / "models"), "--runtime-port", "0"]
    with (tmp_path / "loop.log").open("ab") as out:
        loop = subprocess.Popen(
            [sys.executable, "-m", "driftloop", "loop", "run", *args, "--feedback-port", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + DEADLINE_S
    drift_reader = backend.log.consumer(f"test-drift-{uuid.uuid4().hex[:8]}", [topics["drift"]])
    replay = None
    pids: list[int] = []
    timings: dict[str, float] = {}
    try:
        names = ["runtime", "feedback-api", "joiner", "monitor", "trainer", "validator"]
        urls = wait_for(
            "metrics URL of every worker",
            lambda: all(worker(home, n).get("metrics_url") for n in names),
            deadline,
            loop,
            home,
        )
        assert urls
        timings["workers_up"] = time.monotonic() - started
        # a crashed worker is restarted by the loop, with a new PID
        killed = worker(home, "validator")["pid"]
        os.kill(killed, signal.SIGKILL)
        wait_for(
            "validator restart",
            lambda: (
                worker(home, "validator").get("restarts") == 1
                and worker(home, "validator").get("pid") not in (None, killed)
                and worker(home, "validator").get("metrics_url")
            ),
            deadline,
            loop,
            home,
        )
        shown = subprocess.run(
            [sys.executable, "-m", "driftloop", "loop", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for name in names:  # every worker running, with its /metrics URL
            line = next(ln for ln in shown.splitlines() if ln.startswith(name + " "))
            assert " running " in line and worker(home, name)["metrics_url"] in line, shown
        ingress = worker(home, "runtime")["metrics_url"].removesuffix("/metrics")
        ingress += "/seldon/plant/pump-bearing-temp"
        api = worker(home, "feedback-api")["metrics_url"].removesuffix("/metrics")
        token = (home / "run" / "loop" / "feedback.token").read_text()
        replay = Replay(ingress, api, token)
        for start in range(0, len(stream.pre_X), 200):
            replay.send(stream.pre_X[start : start + 200], stream.pre_y[start : start + 200])
        timings["regime_change_at"] = time.monotonic() - started
        events: list[dict[str, Any]] = []
        verdict = None
        post = 0
        while verdict is None:  # the plant goes on: ~140 rows/s, the post-change rows over and over
            tick = time.monotonic()
            part = np.arange(post, post + POST_CHUNK) % len(stream.post_X)
            replay.send(stream.post_X[part], stream.post_y[part])
            post += POST_CHUNK
            if "drift" not in timings and any(
                e["model_version"] == str(champion) for e in drift_events(drift_reader, events)
            ):
                timings["drift"] = time.monotonic() - started
            try:
                challenger = registry.get_alias(MODEL, "challenger").version
            except RegistryError:
                challenger = None
            if challenger is not None:
                timings.setdefault("challenger", time.monotonic() - started)
                verdict = registry.version_tags(MODEL, challenger).get(VERDICT)
                if verdict == "superseded" or (verdict is not None and verdict != "pass"):
                    verdict = None  # a later challenger may still pass; the deadline bounds it
            assert loop.poll() is None, f"the loop exited with {loop.returncode}\n{logs_tail(home)}"
            assert time.monotonic() < deadline, f"no pass verdict in time ({timings})\n{logs_tail(home)}"
            time.sleep(max(0.0, tick + POST_CHUNK_S - time.monotonic()))
        timings["pass"] = time.monotonic() - started
        drift = wait_for(
            "drift event", lambda: drift_events(drift_reader, events), time.monotonic() + 20, loop, home
        )
        restarts = {w["name"]: w["restarts"] for w in loop_status(home)["workers"]}
        pids = [w["pid"] for w in loop_status(home)["workers"] if w["pid"]]
    finally:
        if replay is not None:
            replay.close()
        drift_reader.close()
        if loop.poll() is None:
            os.kill(loop.pid, signal.SIGTERM)
        try:
            loop.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(loop.pid, signal.SIGKILL)
            loop.wait(timeout=10)
    timings["stopped"] = time.monotonic() - started
    print(f"{backend.name}: {timings}, rows sent {replay.rows_sent if replay else 0}")
    assert loop.returncode == 0, (tmp_path / "loop.log").read_text()
    for pid in pids:  # every worker stopped with the loop
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert all(w["status"] == "stopped" for w in loop_status(home)["workers"])

    # no worker crashed (e.g. several creating the new sqlite MLflow store at once), but the one killed
    assert restarts == {n: int(n == "validator") for n in names}, (restarts, logs_tail(home))
    assert drift[0]["model_version"] == str(champion) and drift[0]["verdict"] == "drift"
    ref = registry.get_alias(MODEL, "challenger")
    assert ref.version != champion and registry.get_alias(MODEL, "champion").version == champion
    tags = registry.version_tags(MODEL, ref.version)
    assert tags["driftloop.kind"] == "candidate" and tags["driftloop.parent_version"] == str(champion)
    assert tags["driftloop.trigger"] == "drift" and tags["driftloop.candidate_id"]
    assert tags[VERDICT] == "pass" and tags["driftloop.validation.champion_version"] == str(champion)
    assert ref.run_id is not None
    params = registry.run_data(ref.run_id)[0]
    assert int(params["window.count"]) > 0 and params["policy.drift_min_examples"] == "150"
