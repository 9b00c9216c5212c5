"""The feedback API served by a real uvicorn server on 127.0.0.1 (in a thread of the test process), so
tests speak real HTTP to it and can still read back the in-memory event log it writes to."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from driftloop_feedback.api import FeedbackSettings, create_app

from driftloop.eventlog import MemoryEventLog


@dataclass
class RunningApi:
    url: str
    log: MemoryEventLog


@contextmanager
def running_api(settings: FeedbackSettings, log: MemoryEventLog | None = None) -> Iterator[RunningApi]:
    """Serve ``create_app(settings, log)`` until the block ends; the server is stopped and joined."""
    log = log or MemoryEventLog()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    config = uvicorn.Config(create_app(settings, log), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="feedback-api")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the feedback API did not start"
            time.sleep(0.01)
        yield RunningApi(url=f"http://127.0.0.1:{port}", log=log)
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        assert not thread.is_alive(), "the feedback API did not stop"
