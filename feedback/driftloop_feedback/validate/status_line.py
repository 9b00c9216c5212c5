"""The validator worker's status line: what it is doing or waiting for, logged once per change."""

from __future__ import annotations

from driftloop_feedback.validate.worker_log import log


class StatusLine:
    def __init__(self) -> None:
        self.text = "starting"
        self._said: dict[str, str] = {}  # topic -> last message logged about it

    def say(self, topic: str, message: str) -> None:
        """Set the status; log ``message`` unless it is the last one said about ``topic``."""
        self.text = message
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.info("validator: %s", message)
