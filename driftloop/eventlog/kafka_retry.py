"""Retrying the read-only Kafka requests (metadata, offsets) that fail while a broker restarts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import kafka.errors as kerrors

T = TypeVar("T")


def retrying(call: Callable[[], T], timeout_s: float) -> T:
    """``call()``, retried with backoff (50 ms doubling to 1 s) while it raises an error kafka-python marks
    retriable (``NodeNotReadyError`` while a connection is re-established, a broker restarting, a
    coordinator moving), for up to ``timeout_s``; then the last error is raised. Other errors are raised
    at once. Only for requests that are safe to repeat."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return call()
        except kerrors.KafkaError as exc:
            if not exc.retriable or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 1.0)
