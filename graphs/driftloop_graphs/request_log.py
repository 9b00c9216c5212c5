"""Request/response logging in Seldon's Kafka logger format, off the request path, never silent.

Handlers put :class:`LogEvent` objects on a bounded queue; one writer task hands batches to a
thread that sends them to the event log and flushes. When the queue is full the policy decides:

- ``block`` (default): the handler waits up to ``block_timeout_s`` for room (back-pressure on the
  caller instead of loss); only past that deadline is the event dropped, and counted as ``dropped``;
- ``sample``: the event is left out at once, never slowing the request, and counted as ``sampled``.

Every outcome is counted in ``driftloop_request_log_events_total{outcome=...}``. Unlike Seldon's
executor (which drops after a 2 s full queue with only a log line), nothing is lost without a count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from driftloop.eventlog.base import Producer
from driftloop.eventlog.bulk import send_many
from driftloop.seldon_log import LogEvent
from driftloop_graphs.metrics import IngressMetrics

logger = logging.getLogger(__name__)

OverloadPolicy = Literal["block", "sample"]


@dataclass(frozen=True)
class RequestLogSettings:
    queue_size: int = 10_000
    policy: OverloadPolicy = "block"
    block_timeout_s: float = 2.0
    batch_size: int = 500
    linger_s: float = 0.02  # gather a batch for up to 20 ms: one bulk append per batch, not per event


class RequestLogger:
    """The bounded queue between request handlers and the event log, and the task that empties it.

    The queue is a deque owned by the event loop: putting an event costs an append (an
    ``asyncio.Queue`` put costs ~5x that, and its per-item wake-ups more), and the writer task is woken
    only when it waits for the first event of a batch. Handlers waiting for room under ``block`` are
    woken when a batch leaves the queue.
    """

    def __init__(
        self,
        producer: Producer,
        metrics: IngressMetrics,
        settings: RequestLogSettings,
        partitions_for: Callable[[str], int] | None = None,
    ) -> None:
        self._producer = producer
        self._partitions_for = partitions_for
        self._partition_counts: dict[str, int] = {}
        self._turns: dict[str, int] = {}
        self._metrics = metrics
        self._settings = settings
        self._capacity = settings.queue_size
        self._samples = settings.policy == "sample"
        self._sampled = metrics.log_events.labels("sampled")
        self._skipped = metrics.log_events.labels("skipped")
        self._events: collections.deque[tuple[str, LogEvent]] = collections.deque()
        self._writer_idle: asyncio.Future[None] | None = None  # set while the writer waits for an event
        self._room_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._reserved = 0  # room held by ``reserve`` for a ``put_reserved`` to come

    def start(self) -> None:
        self._writer = asyncio.create_task(self._run(), name="request-log-writer")

    @property
    def depth(self) -> int:
        return len(self._events) + self._in_flight

    def offer(self, topic: str, event: LogEvent) -> bool:
        """``submit`` without waiting: queued (or, under ``sample``, counted as sampled) -> True; a
        full queue under ``block`` -> False, and the caller must ``await submit`` to wait for room."""
        if len(self._events) + self._reserved < self._capacity:
            self._put(topic, event)
            return True
        if not self._samples:
            return False
        self._sampled.inc()
        return True

    def has_room(self) -> bool:
        """Whether ``offer`` would take an event now."""
        return self._samples or len(self._events) + self._reserved < self._capacity

    def reserve(self) -> bool:
        """Hold room for one event, put later (in the same callback) with ``put_reserved``: a handler
        can then send its answer before it builds the event, and still answer only once the event has
        room. False when the queue is full (``offer`` then samples or refuses as usual)."""
        if len(self._events) + self._reserved < self._capacity:
            self._reserved += 1
            return True
        return False

    def put_reserved(self, topic: str, event: LogEvent) -> None:
        self._reserved -= 1
        self._put(topic, event)

    def _put(self, topic: str, event: LogEvent) -> None:
        self._events.append((topic, event))
        idle = self._writer_idle
        if idle is not None:
            self._writer_idle = None
            if not idle.done():
                idle.set_result(None)

    async def submit(self, topic: str, event: LogEvent) -> None:
        if self.offer(topic, event):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.block_timeout_s
        while True:  # woken when a batch leaves the queue; another handler may take the room first
            room = loop.create_future()
            self._room_waiters.append(room)
            try:
                async with asyncio.timeout_at(deadline):
                    await room
            except TimeoutError:
                self._metrics.log_events.labels("dropped").inc()
                timeout = self._settings.block_timeout_s
                logger.error("request log queue full for %.1f s: dropped one event", timeout)
                return
            if self.offer(topic, event):
                return

    def skipped(self, count: int) -> None:
        """Count events a request asked not to log (``Seldon-Skip-Logging: true``)."""
        self._skipped.inc(count)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        settings = self._settings
        while True:
            if not self._events:
                self._writer_idle = loop.create_future()
                await self._writer_idle
            if len(self._events) < settings.batch_size and settings.linger_s > 0:
                await asyncio.sleep(settings.linger_s)
            events = self._events
            batch = [events.popleft() for _ in range(min(settings.batch_size, len(events)))]
            self._in_flight = len(batch)
            self._wake_room_waiters(len(batch))
            try:
                await asyncio.to_thread(self._write, batch)
            finally:
                self._in_flight = 0
                self._metrics.log_queue_depth.set(self.depth)

    def _wake_room_waiters(self, room: int) -> None:
        waiters = self._room_waiters
        while room and waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # not timed out meanwhile
                waiter.set_result(None)
                room -= 1

    def _write(self, batch: list[tuple[str, LogEvent]]) -> None:
        by_topic: dict[str, list[LogEvent]] = {}
        for topic, event in batch:
            by_topic.setdefault(topic, []).append(event)
        for topic, events in by_topic.items():
            try:
                # Keyless, as Seldon's logger writes: a whole batch to one partition, the next batch to
                # the next (Kafka's sticky partitioning for keyless records), in one bulk append.
                partition = self._next_partition(topic)
                send_many(
                    self._producer,
                    topic,
                    [(None, e.payload) for e in events],
                    partition=partition,
                    headers=[e.headers() for e in events],
                )
                self._producer.flush(timeout_s=30)
            except Exception as exc:  # the event log refused: count, say so, keep serving
                self._metrics.log_events.labels("failed").inc(len(events))
                logger.error("request log: event log refused %d event(s) for %s: %s", len(events), topic, exc)
                continue
            self._metrics.log_events.labels("written").inc(len(events))

    def _next_partition(self, topic: str) -> int:
        count = self._partition_counts.get(topic)
        if count is None:
            found = self._partitions_for(topic) if self._partitions_for is not None else 1
            count = self._partition_counts[topic] = max(1, found)
        turn = self._turns.get(topic, 0)
        self._turns[topic] = turn + 1
        return turn % count

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued event is written (used on shutdown and by tests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.depth and loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.drain()
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._producer.close()
