"""Run a LocalRuntime on its own event loop in a thread, so sync and async tests can share one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from driftloop_graphs.runtime import LocalRuntime

T = TypeVar("T")


class RuntimeThread:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.startup_s = 0.0

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 180) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> RuntimeThread:
        self._thread.start()
        self.startup_s = self.call(self.runtime.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.runtime.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
