"""Flushing without waiting: ``begin_flush`` starts a flush and returns a ``FlushBarrier`` that is done
once every record queued before it was acknowledged, so a caller can go on working while the log
acknowledges and act (write a snapshot, commit offsets) when the barrier is done. Producers with
``flush_async`` (Kafka) return a barrier that completes in the background; any other producer is
flushed in the call and its barrier is done at once.

>>> from driftloop.eventlog import MemoryEventLog
>>> producer = MemoryEventLog().producer()
>>> barrier = begin_flush(producer)
>>> barrier.done()
True
"""

from __future__ import annotations

from typing import Protocol

from driftloop.eventlog.base import Producer


class FlushBarrier(Protocol):
    def done(self) -> bool:
        """Whether every record queued before the barrier was acknowledged; raises ``EventLogError``
        (as ``flush`` does) if one was not."""
        ...

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until ``done``; raise as ``done`` does, or ``EventLogError`` after ``timeout_s``."""
        ...


class FlushedBarrier:
    """The barrier of a flush that already returned."""

    def done(self) -> bool:
        return True

    def wait(self, timeout_s: float | None = None) -> None:
        return None


def begin_flush(producer: Producer) -> FlushBarrier:
    flush_async = getattr(producer, "flush_async", None)
    if flush_async is not None:
        barrier: FlushBarrier = flush_async()
        return barrier
    producer.flush()
    return FlushedBarrier()
