"""Helpers of the joiner integration tests: open either real log, write Seldon-format request-log events
and truths, start/kill joiner subprocesses, read the labelled topic."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.records import LabelledExample, TruthRecord

from driftloop.eventlog import EventLog
from tests.feedback.helpers import chain_events

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Topology:
    """Unique topic names and group per test (the Kafka broker is shared by the whole run)."""

    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    partitions: int = 3

    def env(self) -> dict[str, str]:
        s = self.suffix
        return {
            "DRIFTLOOP_JOINER_GROUP_ID": f"joiner-{s}",
            "DRIFTLOOP_JOINER_REQUEST_LOG_TOPIC": f"seldon.{s}",
            "DRIFTLOOP_JOINER_KEYED_LOG_TOPIC": f"requestlog.{s}",
            "DRIFTLOOP_JOINER_FEEDBACK_TOPIC": f"feedback.{s}",
            "DRIFTLOOP_JOINER_TELEMETRY_TOPIC": f"telemetry.{s}",
            "DRIFTLOOP_JOINER_PREDICTIONS_TOPIC": f"predictions.{s}",
            "DRIFTLOOP_JOINER_LABELLED_TOPIC": f"labelled.{s}",
            "DRIFTLOOP_JOINER_PARTITIONS": str(self.partitions),
            "DRIFTLOOP_JOINER_CHECKPOINT_INTERVAL_S": "0.3",
        }

    def topic(self, name: str) -> str:
        return self.env()[f"DRIFTLOOP_JOINER_{name.upper()}_TOPIC"]


TOPIC_NAMES = ("request_log", "keyed_log", "feedback", "telemetry", "predictions", "labelled")


def create_topics(log: EventLog, topo: Topology, timeout_s: float = 60.0) -> None:
    """Create the joiner's topics and wait until the log reports every partition of each."""
    for name in TOPIC_NAMES:
        log.create_topic(topo.topic(name), topo.partitions)
    deadline = time.monotonic() + timeout_s
    missing = list(TOPIC_NAMES)
    while missing and time.monotonic() < deadline:
        missing = [n for n in missing if len(log.end_offsets(topo.topic(n))) != topo.partitions]
        time.sleep(0.2)
    assert not missing, f"topics {missing} not visible after {timeout_s} s"


def write_requests(log: EventLog, topo: Topology, start: int, count: int, rows: int = 2) -> set[str]:
    """``count`` graph calls (4 Seldon events each, no key) and truth for every row of every other
    call; returns the example ids that must be labelled."""
    producer = log.producer()
    expected: set[str] = set()
    for i in range(start, start + count):
        rid = str(uuid.UUID(int=i + 1))
        feats = [[float(i), float(r)] for r in range(rows)]
        for ev in chain_events(rid, feats, [float(i) + r for r in range(rows)]):
            producer.send(topo.topic("request_log"), ev.payload, headers=ev.headers())
        if i % 2 == 0:
            for r in range(rows):
                truth = TruthRecord(rid, r, float(i) * 10 + r, time.time())
                producer.send(topo.topic("feedback"), truth.encode(), key=rid.encode())
                expected.add(f"{rid}:{r}")
    producer.flush()
    producer.close()
    return expected


def start_joiner(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop", "feedback", "join", "--progress-s", "1", *args],
            cwd=REPO,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **env},  # a hard crash leaves its stack in the log
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def printed_url(log_path: Path, pattern: str, timeout_s: float = 60.0) -> str:
    """The URL a process started with port 0 printed once it was listening (group 1 of ``pattern``):
    the port is the process's own pick, so no port chosen here can be taken by another socket first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} line in {log_path} within {timeout_s:g} s: {progress(log_path)}")


def metrics_url(log_path: Path) -> str:
    """A joiner's /metrics URL (started with ``--metrics-port 0``)."""
    return printed_url(log_path, r"joiner metrics on (http://127\.0\.0\.1:\d+/metrics)")


def api_url(log_path: Path) -> str:
    """The feedback API's base URL (started with ``--port 0``)."""
    return printed_url(log_path, r"feedback API on (http://127\.0\.0\.1:\d+) ")


def progress(log_path: Path) -> str:
    """The joiner's last progress lines and warnings (for assertion messages)."""
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join([ln for ln in lines if "joined=" in ln or "WARNING" in ln or "ERROR" in ln][-8:])


def start_api(env: dict[str, str], log_path: Path, port: int = 0) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop", "feedback", "serve", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class LabelledReader:
    """Reads the labelled topic as the trainer would: deduplicated by ``example_id``."""

    def __init__(self, log: EventLog, topic: str) -> None:
        self.log, self.topic = log, topic
        self.consumer = log.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topic])
        self.raw = 0
        self.examples: dict[str, LabelledExample] = {}
        self.conflicts: list[str] = []

    def read_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            for record in self.consumer.poll(timeout_s=0.5, max_records=5000):
                for example in decode_labelled(record.value):
                    self.raw += 1
                    previous = self.examples.setdefault(example.example_id, example)
                    if previous != example:
                        self.conflicts.append(example.example_id)

    def close(self) -> None:
        self.consumer.close()
