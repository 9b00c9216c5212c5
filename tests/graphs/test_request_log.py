"""The request-log queue's overload policies, with a slow producer (the event-log port's in-memory
implementation behind a gate): nothing leaves the queue uncounted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.request_log import RequestLogger, RequestLogSettings

from driftloop.eventlog import MemoryEventLog
from driftloop.eventlog.base import Delivery
from driftloop.seldon_log import TYPE_REQUEST, LogEvent


class GatedProducer:
    """The memory log's producer, blocked in ``send`` until the gate opens (a stalled broker)."""

    def __init__(self, log: MemoryEventLog) -> None:
        self.inner = log.producer()
        self.gate = threading.Event()

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | str]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Delivery:
        self.gate.wait(30)
        return self.inner.send(topic, value, key=key, headers=headers)

    def flush(self, timeout_s: float | None = None) -> None:
        self.inner.flush(timeout_s)

    def close(self) -> None:
        self.inner.close()


def event(i: int) -> LogEvent:
    return LogEvent(TYPE_REQUEST, f"r{i}", "m", "d", "ns", "main", "v2", "application/json", b"{}")


def count(metrics: IngressMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("driftloop_request_log_events_total", {"outcome": outcome})
    return value or 0.0


async def run(policy: str, submitted: int, block_timeout_s: float) -> tuple[IngressMetrics, MemoryEventLog]:
    log = MemoryEventLog()
    log.create_topic("seldon")
    producer = GatedProducer(log)
    metrics = IngressMetrics()
    settings = RequestLogSettings(queue_size=4, policy=policy, block_timeout_s=block_timeout_s, linger_s=0)  # type: ignore[arg-type]
    logger = RequestLogger(producer, metrics, settings)
    logger.start()
    await asyncio.gather(*(logger.submit("seldon", event(i)) for i in range(submitted)))
    producer.gate.set()
    await logger.close()
    return metrics, log


def test_sample_policy_counts_every_event_it_leaves_out() -> None:
    metrics, log = asyncio.run(run("sample", 50, block_timeout_s=5))
    written, sampled = count(metrics, "written"), count(metrics, "sampled")
    assert sampled > 0
    assert written + sampled == 50
    assert sum(log.end_offsets("seldon").values()) == written


def test_block_policy_drops_only_past_the_deadline_and_counts_it() -> None:
    metrics, log = asyncio.run(run("block", 20, block_timeout_s=0.2))
    written, dropped = count(metrics, "written"), count(metrics, "dropped")
    assert dropped > 0 and written + dropped == 20
    assert sum(log.end_offsets("seldon").values()) == written


def test_block_policy_loses_nothing_when_the_log_catches_up_in_time() -> None:
    async def scenario() -> tuple[IngressMetrics, MemoryEventLog]:
        log = MemoryEventLog()
        log.create_topic("seldon")
        producer = GatedProducer(log)
        metrics = IngressMetrics()
        logger = RequestLogger(
            producer, metrics, RequestLogSettings(queue_size=4, block_timeout_s=10, linger_s=0)
        )
        logger.start()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, producer.gate.set)  # the broker recovers after 0.3 s
        await asyncio.gather(*(logger.submit("seldon", event(i)) for i in range(40)))
        await logger.close()
        return metrics, log

    metrics, log = asyncio.run(scenario())
    assert count(metrics, "written") == 40 and count(metrics, "dropped") == 0
    assert sum(log.end_offsets("seldon").values()) == 40


def test_reserved_room_is_held_for_the_event_put_after_the_answer() -> None:
    async def scenario() -> tuple[list[bool], int, float]:
        log = MemoryEventLog()
        log.create_topic("seldon")
        producer = GatedProducer(log)
        metrics = IngressMetrics()
        logger = RequestLogger(producer, metrics, RequestLogSettings(queue_size=2, linger_s=0))
        # not started: nothing leaves the queue
        outcomes = [logger.reserve(), logger.offer("seldon", event(0))]
        outcomes += [logger.offer("seldon", event(1)), logger.has_room(), logger.reserve()]
        logger.put_reserved("seldon", event(2))
        depth = logger.depth
        logger.start()
        producer.gate.set()
        await logger.close()
        return outcomes, depth, count(metrics, "written")

    outcomes, depth, written = asyncio.run(scenario())
    # the reservation takes one of two places: one offer fits, the next is refused (block policy)
    assert outcomes == [True, True, False, False, False]
    assert depth == 2 and written == 2
