"""Fixtures for the event-log contract suite: one ``kit`` per implementation (memory, embedded, Kafka)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driftloop.eventlog import Consumer, EventLog, MemoryEventLog, Record
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.settings import EmbeddedSettings
from tests.fixtures.kafka import quick_kafka_settings, unique_topic


def quick_embedded_settings(**overrides: object) -> EmbeddedSettings:
    values: dict[str, object] = {"session_timeout_s": 3.0}
    values.update(overrides)
    return EmbeddedSettings.model_validate(values)


@dataclass
class LogKit:
    """Opens connections to one log; every connection opened is closed at teardown."""

    kind: str
    factory: Callable[[], EventLog]
    opened: list[EventLog] = field(default_factory=list)
    consumers: list[Consumer] = field(default_factory=list)

    def open(self) -> EventLog:
        log = self.factory()
        self.opened.append(log)
        return log

    def consumer(self, group: str, topics: Sequence[str], **kwargs: str) -> Consumer:
        consumer = self.open().consumer(group, topics, **kwargs)
        self.consumers.append(consumer)
        return consumer

    def topic(self, partitions: int = 1) -> str:
        name = unique_topic("contract")
        self.open().create_topic(name, partitions)
        return name

    def close(self) -> None:
        for consumer in self.consumers:
            with contextlib.suppress(Exception):  # already closed by the test
                consumer.close()
        for log in self.opened:
            log.close()


def _make_kit(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> LogKit:
    if kind == "memory":
        shared = MemoryEventLog()
        kit = LogKit(kind, lambda: shared)
    elif kind == "embedded":
        kit = LogKit(kind, lambda: EmbeddedEventLog(tmp_path / "log", quick_embedded_settings()))
    else:
        from driftloop.eventlog.kafka import KafkaEventLog

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        kit = LogKit(kind, lambda: KafkaEventLog(bootstrap, quick_kafka_settings()))
    return kit


@pytest.fixture(params=["memory", "embedded", pytest.param("kafka", marks=pytest.mark.integration)])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogKit]:
    """Each implementation in turn: the in-memory log, the embedded log, a real Kafka broker."""
    kit = _make_kit(request, request.param, tmp_path)
    try:
        yield kit
    finally:
        kit.close()


@pytest.fixture(params=["memory", "embedded"])
def local_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogKit]:
    """The implementations driftloop coordinates itself (no broker)."""
    kit = _make_kit(request, request.param, tmp_path)
    try:
        yield kit
    finally:
        kit.close()


def drain(consumer: Consumer, count: int, timeout_s: float = 20.0) -> list[Record]:
    """Poll until ``count`` records arrived (or the timeout passed); return what arrived."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.poll(timeout_s=0.2))
    return out


def poll_until(
    consumers: Sequence[Consumer],
    done: Callable[[dict[int, list[Record]]], bool],
    timeout_s: float = 30.0,
) -> dict[int, list[Record]]:
    """Poll each consumer in its own thread (as separate services would) until ``done(received)``;
    return the records each one received. Polling two Kafka consumers alternately from one thread
    with short timeouts makes kafka-python rejoin forever, which is not how services run."""
    got: dict[int, list[Record]] = {i: [] for i in range(len(consumers))}
    stop = threading.Event()
    errors: list[BaseException] = []

    def run(i: int, consumer: Consumer) -> None:
        try:
            while not stop.is_set():
                records = consumer.poll(timeout_s=0.2)
                with lock:
                    got[i].extend(records)
        except BaseException as exc:
            errors.append(exc)

    lock = threading.Lock()
    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(consumers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not errors:
            with lock:
                if done(got):
                    return got
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    if errors:
        raise errors[0]
    raise AssertionError(
        f"condition not reached within {timeout_s} s; received {[len(v) for v in got.values()]}"
    )
