"""kill -9 of a real trainer process mid-stream, then a restart: every labelled example is learned
exactly once (the model's ``n_samples_seen_`` against the examples consumed, and a digest of the ids).

The trainer runs as ``python -m driftloop trainer run`` on the embedded event log, with its champion in
a real MLflow sqlite registry under ``DRIFTLOOP_HOME``. The test keeps producing labelled examples (and
resends of some, as a joiner does after a crash) while the first process is killed with SIGKILL.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from driftloop_feedback.labelled_batch import encode_examples
from driftloop_feedback.learn.state import digest_of

from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.learning.registration import model_pip_requirements
from driftloop.registry import MlflowRegistry
from driftloop.settings import StateSettings
from tests.learn.helpers import examples, regression_rows, regressor_champion

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPIC = "driftloop.labelled"
TOTAL = 3000
LEARNED = re.compile(r"learned=(\d+)")

pytestmark = pytest.mark.integration


class TrainerProcess:
    """``driftloop trainer run`` in its own process group; its stdout read by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "driftloop", "trainer", "run", "--progress-s", "0.1"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def learned(self) -> int:
        for line in reversed(self.lines):
            if match := LEARNED.search(line):
                return int(match.group(1))
        return -1

    def wait_learned(self, at_least: int, timeout_s: float = 120.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.learned() >= at_least:
                return self.learned()
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"trainer never learned {at_least}: " + "\n".join(self.lines[-30:]))

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._close()

    def _close(self) -> None:
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def terminate(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        code = self.process.wait(60)
        self._close()
        assert code == 0, "\n".join(self.lines[-30:])


def test_kill_9_mid_stream_then_restart_learns_each_example_exactly_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = StateSettings(home=home, mlflow_tracking_uri=None)
    registry = MlflowRegistry(state.tracking_uri(), state.artifact_root())
    champion = regressor_champion()
    X, y = regression_rows(TOTAL, seed=21)
    registry.register_sklearn_model(
        "pump-bearing-temp",
        champion,
        input_example=X[:5],
        pip_requirements=model_pip_requirements(),
        alias="champion",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        PYTHONWARNINGS="ignore::DeprecationWarning",
        DRIFTLOOP_HOME=str(home),
        DRIFTLOOP_EVENTLOG_SESSION_TIMEOUT_S="3",
        DRIFTLOOP_TRAINER_BATCH_SIZE="25",
        DRIFTLOOP_TRAINER_CHECKPOINT_INTERVAL_S="1",
        DRIFTLOOP_TRAINER_POLL_MAX_RECORDS="100",
        DRIFTLOOP_TRAINER_REPLAY_RATIO="0.5",
        DRIFTLOOP_TRAINER_POLICY__EVERY_N_EXAMPLES="1000000",
        DRIFTLOOP_TRAINER_POLICY__DEGRADATION_ENABLED="false",
    )
    log = EmbeddedEventLog(state.eventlog_dir())
    log.create_topic(TOPIC, 3)
    labelled = examples(X, y)
    producer = log.producer()
    stop = threading.Event()

    def produce() -> None:
        """Paced, with every 10th example sent twice (at-least-once upstream). The first third as JSON
        records (one per example, the format before batch records), the rest as batch records of 10
        examples, as the joiner writes them: the trainer reads a topic that changed format."""
        for start in range(0, TOTAL, 10):
            if stop.is_set():
                return
            chunk = labelled[start : start + 10]
            if start < TOTAL // 3:
                for example in chunk + chunk[:1]:
                    producer.send(TOPIC, example.encode(), key=example.request_id.encode())
            else:
                partition = (start // 10) % 3
                for value in encode_examples(chunk) + encode_examples(chunk[:1]):
                    producer.send(TOPIC, value, partition=partition)
            if start % 50 == 40:
                producer.flush()
                time.sleep(0.1)
        producer.flush()

    writer = threading.Thread(target=produce)
    first = TrainerProcess(env)
    second: TrainerProcess | None = None
    try:
        first.wait_learned(0, timeout_s=120)  # started (champion loaded)
        writer.start()
        checkpoint_path = home / "trainer" / "pump-bearing-temp.checkpoint"
        first.wait_learned(800)
        deadline = time.monotonic() + 30
        while not checkpoint_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        at_kill = first.wait_learned(first.learned() + 300)  # learning on past that checkpoint
        first.kill()  # mid-stream: examples are still arriving, a batch may be half learned
        assert first.process.returncode == -signal.SIGKILL
        with open(checkpoint_path, "rb") as fh:
            at_checkpoint = pickle.load(fh)["state"].challenger.learned
        assert 0 < at_checkpoint <= at_kill < TOTAL
        assert writer.is_alive()  # the stream goes on while the trainer is down
        second = TrainerProcess(env)
        writer.join(120)
        second.wait_learned(TOTAL, timeout_s=180)
        second.terminate()  # a final checkpoint
    finally:
        stop.set()
        for process in (first, second):
            if process is not None:
                process.kill()
        log.close()
    with open(checkpoint_path, "rb") as fh:
        final = pickle.load(fh)["state"]
    challenger = final.challenger
    assert challenger.learned == TOTAL
    assert final.learned_digest == digest_of(e.example_id for e in labelled)
    assert challenger.model.n_samples_seen_ == champion.n_samples_seen_ + TOTAL + challenger.replayed
    assert final.duplicates >= TOTAL // 10  # the resends (plus any re-read after the kill)
    assert final.consumed == TOTAL + final.duplicates + sum(final.rejected.values())
    print(f"killed at learned={at_kill}, checkpoint had {at_checkpoint}; {at_kill - at_checkpoint} redone")
