"""kill -9 of a real trainer on Kafka with ``DRIFTLOOP_STATE_STORE=log``, restarted in another working
directory (another "node": nothing of the first one's files): it resumes from the checkpoint in the
compacted state topic and learns every labelled example exactly once (``n_samples_seen_`` against the
examples consumed, and a digest of the ids). The MLflow registry is shared, as a tracking server is on
a cluster."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from driftloop_feedback.learn.state import digest_of

from driftloop.eventlog.kafka import KafkaEventLog
from driftloop.learning.registration import model_pip_requirements
from driftloop.registry import MlflowRegistry
from driftloop.statestore.kafka_changelog import KafkaChangelogStore
from tests.fixtures.kafka import quick_kafka_settings
from tests.learn.helpers import examples, regression_rows, regressor_champion
from tests.learn.test_kill_restart import REPO_ROOT, TrainerProcess

TOTAL = 2000
KEY = "pump-bearing-temp.checkpoint"

pytestmark = pytest.mark.integration


def stored_state(log: KafkaEventLog, topic: str, group: str) -> Any:
    store = KafkaChangelogStore(log, topic, f"trainer/{group}")
    try:
        data = store.read(KEY)
    finally:
        store.close()
    return None if data is None else pickle.loads(data)["state"]


def test_trainer_killed_and_restarted_on_another_node_learns_each_example_once(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, state_topic, group = f"labelled.{suffix}", f"state.{suffix}", f"trainer-{suffix}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"  # shared, as an MLflow server is
    registry = MlflowRegistry(tracking, tmp_path / "mlartifacts")
    champion = regressor_champion()
    X, y = regression_rows(TOTAL, seed=22)
    registry.register_sklearn_model(
        "pump-bearing-temp",
        champion,
        input_example=X[:5],
        pip_requirements=model_pip_requirements(),
        alias="champion",
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    base.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONWARNINGS="ignore::DeprecationWarning",
        DRIFTLOOP_MLFLOW_TRACKING_URI=tracking,
        DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S="6",
        DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S="0.5",
        DRIFTLOOP_KAFKA_LINGER_MS="0",
        DRIFTLOOP_STATE_STORE="log",
        DRIFTLOOP_STATE_TOPIC=state_topic,
        DRIFTLOOP_STATE_CHANGELOG_CHUNK_BYTES="16384",  # the checkpoint spans several records
        DRIFTLOOP_TRAINER_GROUP_ID=group,
        DRIFTLOOP_TRAINER_LABELLED_TOPIC=topic,
        DRIFTLOOP_TRAINER_DRIFT_TOPIC=f"drift.{suffix}",
        DRIFTLOOP_TRAINER_BATCH_SIZE="25",
        DRIFTLOOP_TRAINER_CHECKPOINT_INTERVAL_S="1",
        DRIFTLOOP_TRAINER_POLL_MAX_RECORDS="100",
        DRIFTLOOP_TRAINER_REPLAY_RATIO="0.5",
        DRIFTLOOP_TRAINER_POLICY__EVERY_N_EXAMPLES="1000000",
        DRIFTLOOP_TRAINER_POLICY__DEGRADATION_ENABLED="false",
    )
    log = KafkaEventLog(kafka_bootstrap, quick_kafka_settings())
    log.create_topic(topic, 3)
    labelled = examples(X, y)
    producer = log.producer()
    stop = threading.Event()

    def produce() -> None:  # paced, with every 10th example sent twice (at-least-once upstream)
        for i, example in enumerate(labelled):
            if stop.is_set():
                return
            producer.send(topic, example.encode(), key=example.request_id.encode())
            if i % 10 == 0:
                producer.send(topic, example.encode(), key=example.request_id.encode())
            if i % 50 == 49:
                producer.flush()
                time.sleep(0.1)
        producer.flush()

    writer = threading.Thread(target=produce)
    first = TrainerProcess({**base, "DRIFTLOOP_HOME": str(tmp_path / "node-a")})
    second: TrainerProcess | None = None
    try:
        first.wait_learned(0, timeout_s=120)  # started (champion loaded)
        writer.start()
        first.wait_learned(600)
        deadline = time.monotonic() + 30
        while stored_state(log, state_topic, group) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        at_kill = first.wait_learned(first.learned() + 200)  # learning on past that checkpoint
        first.kill()  # mid-stream: examples are still arriving, a batch may be half learned
        assert first.process.returncode == -signal.SIGKILL
        at_checkpoint = stored_state(log, state_topic, group).challenger.learned
        assert 0 < at_checkpoint <= at_kill < TOTAL
        assert writer.is_alive()  # the stream goes on while the trainer is down
        second = TrainerProcess({**base, "DRIFTLOOP_HOME": str(tmp_path / "node-b")})
        writer.join(120)
        second.wait_learned(TOTAL, timeout_s=180)
        second.terminate()  # a final checkpoint
        final = stored_state(log, state_topic, group)
    finally:
        stop.set()
        for process in (first, second):
            if process is not None:
                process.kill()
        producer.close()
        log.close()
    assert second is not None
    assert any("resumed from key trainer/" in line for line in second.lines), "\n".join(second.lines[-20:])
    assert not (tmp_path / "node-b" / "trainer").exists()  # nothing on the second node's disk
    challenger = final.challenger
    assert challenger.learned == TOTAL
    assert final.learned_digest == digest_of(e.example_id for e in labelled)
    assert challenger.model.n_samples_seen_ == champion.n_samples_seen_ + TOTAL + challenger.replayed
    assert final.duplicates >= TOTAL // 10  # the resends (plus any re-read after the kill)
    assert final.consumed == TOTAL + final.duplicates + sum(final.rejected.values())
    print(f"killed at learned={at_kill}, checkpoint had {at_checkpoint}; {at_kill - at_checkpoint} redone")
