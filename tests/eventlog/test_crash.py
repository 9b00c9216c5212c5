"""Crash safety with real processes killed by SIGKILL, on the embedded log and on real Kafka."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftloop.eventlog import EventLog
from driftloop.eventlog.embedded import EmbeddedEventLog
from tests.eventlog.conftest import drain, quick_embedded_settings
from tests.fixtures.kafka import quick_kafka_settings, unique_topic

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@dataclass
class Target:
    kind: str
    env: dict[str, str]
    log: EventLog


@pytest.fixture(params=["embedded", "kafka"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
    log: EventLog
    if request.param == "embedded":
        home = tmp_path / "home"
        env.update(DRIFTLOOP_HOME=str(home), DRIFTLOOP_EVENTLOG_SESSION_TIMEOUT_S="3")
        log = EmbeddedEventLog(home.resolve() / "eventlog", quick_embedded_settings())
    else:
        from driftloop.eventlog.kafka import KafkaEventLog

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        env.update(
            DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S="3",
            DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S="0.5",
            DRIFTLOOP_KAFKA_LINGER_MS="0",
        )
        log = KafkaEventLog(bootstrap, quick_kafka_settings())
    try:
        yield Target(request.param, env, log)
    finally:
        log.close()


class Child:
    """A child process in its own process group, read line by line, killed with SIGKILL."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        # stderr to a file, not a pipe nobody drains: a child logging more than a pipe holds would block
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in kill)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.eventlog.crash_child", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []

    def read_until(self, predicate: str, timeout_s: float = 60.0) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                self.stderr.seek(0)
                err = self.stderr.read()
                raise AssertionError(f"child exited ({self.process.wait()}): {err[-3000:]}")
            self.lines.append(line.strip())
            if line.startswith(predicate):
                return
        raise AssertionError(f"child never printed {predicate!r}")

    def read_all(self) -> None:
        """Collect every line until the child exits (run in a thread)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        try:
            out, _ = self.process.communicate(timeout=30)
        except ValueError:  # stdout is being read by read_all's thread
            self.process.wait(30)
            out = ""
        self.lines.extend(line.strip() for line in (out or "").splitlines())
        self.stderr.close()


def test_a_producer_killed_right_after_acknowledged_sends_loses_none_of_them(target: Target) -> None:
    topic = unique_topic("crash")
    target.log.create_topic(topic, 3)
    child = Child(target.env, "produce", topic, "100000", "p", "wait")
    try:
        child.read_until("acked p:199")
    finally:
        child.kill()  # mid-stream: it was still sending
    acked = {line.split()[1] for line in child.lines if line.startswith("acked")}
    assert len(acked) >= 200
    stored = {
        r.value.decode() for r in drain(target.log.consumer("audit", [topic]), len(acked), timeout_s=30)
    }
    assert acked <= stored


@pytest.mark.parametrize("mode", ["nocommit", "commit"])
def test_a_consumer_killed_re_reads_exactly_what_it_did_not_commit(target: Target, mode: str) -> None:
    topic = unique_topic("crash")
    target.log.create_topic(topic, 1)
    producer = target.log.producer()
    for seq in range(20):
        producer.send(topic, str(seq).encode())
    producer.flush()
    child = Child(target.env, "consume", "crashy", topic, "10", mode)
    try:
        child.read_until("done")
    finally:
        child.kill()
    assert [line for line in child.lines if line.startswith("got")] == [f"got {i}" for i in range(10)]
    survivor = target.log.consumer("crashy", [topic])
    expected_first = 0 if mode == "nocommit" else 10  # at-least-once: uncommitted work is redone
    records = drain(survivor, 20 - expected_first, timeout_s=30)
    assert [int(r.value) for r in records] == list(range(expected_first, 20))
    survivor.close()


def test_several_producer_processes_share_one_embedded_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT), PYTHONWARNINGS="ignore::DeprecationWarning", DRIFTLOOP_HOME=str(home)
    )
    log = EmbeddedEventLog(home / "eventlog", quick_embedded_settings())
    log.create_topic("shared", 3)
    children = [Child(env, "produce", "shared", "300", f"c{i}", "exit") for i in range(3)]
    try:
        for child in children:
            child.read_until("done", timeout_s=120)
    finally:
        for child in children:
            child.kill()
    records = drain(log.consumer("audit", ["shared"]), 900)
    assert sorted(r.value.decode() for r in records) == sorted(
        f"c{i}:{s}" for i in range(3) for s in range(300)
    )
    for partition in range(3):
        offsets = [r.offset for r in records if r.partition == partition]
        assert offsets == list(range(len(offsets)))
    per_key: dict[bytes | None, list[int]] = {}
    for record in records:
        per_key.setdefault(record.key, []).append(int(record.value.decode().split(":")[1]))
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    log.close()


def test_two_processes_in_one_group_split_the_partitions_between_them(target: Target) -> None:
    topic = unique_topic("group")
    target.log.create_topic(topic, 4)
    # no crash here: a default-length session, so a member starved of CPU for 3 s on a loaded machine is
    # not expelled (each expulsion is another rebalance, and the 2 + 2 split is never seen at rest)
    env = {
        **target.env,
        "DRIFTLOOP_KAFKA_SESSION_TIMEOUT_S": "10",
        "DRIFTLOOP_KAFKA_HEARTBEAT_INTERVAL_S": "1",
        "DRIFTLOOP_EVENTLOG_SESSION_TIMEOUT_S": "10",
    }
    members = [Child(env, "member", "split", topic) for _ in range(2)]
    readers = [threading.Thread(target=m.read_all, daemon=True) for m in members]
    for reader in readers:
        reader.start()
    try:

        def latest_assignment(member: Child) -> set[int]:
            lines = [line for line in list(member.lines) if line.startswith("assigned")]
            return {int(p) for p in lines[-1].split()[1].split(",") if p} if lines else set()

        wait_for(
            lambda: all(len(latest_assignment(m)) == 2 for m in members), what="a 2 + 2 split", timeout_s=180
        )
        first, second = (latest_assignment(m) for m in members)
        assert first | second == {0, 1, 2, 3}
        assert not first & second
        producer = target.log.producer()
        for i in range(100):
            producer.send(topic, str(i).encode(), key=str(i).encode())
        producer.flush()

        def received(member: Child) -> list[tuple[int, int]]:
            got = [line.split() for line in list(member.lines) if line.startswith("got")]
            return [(int(partition), int(value)) for _, partition, value in got]

        wait_for(lambda: sum(len(received(m)) for m in members) >= 100, what="100 records")
        assert {p for p, _ in received(members[0])} <= first
        assert {p for p, _ in received(members[1])} <= second
        assert sorted(v for m in members for _, v in received(m)) == list(range(100))
    finally:
        for member in members:
            member.kill()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.1)
