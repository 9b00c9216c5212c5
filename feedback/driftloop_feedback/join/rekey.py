"""The re-keying stage: Seldon's logger writes the request log with no key, so a request's events
can land on any partition. This stateless stage copies every event, value and headers unchanged, to
the keyed request log with key = request id, so the request join sees all events of a request (and
the truth posted for it, keyed the same way) on one partition. At-least-once: it commits only what it
has flushed; a copy repeated after a crash is a duplicate event the join drops."""

from __future__ import annotations

import logging
from collections.abc import Callable

from driftloop_feedback.join.settings import JoinerSettings

from driftloop.eventlog import CommitFailedError, EventLog
from driftloop.seldon_log import H_REQUEST_ID

log = logging.getLogger(__name__)


class RekeyStage:
    name = "rekey"

    def __init__(self, log_: EventLog, settings: JoinerSettings) -> None:
        self.settings = settings
        self.consumer = log_.consumer(f"{settings.group_id}-rekey", [settings.request_log_topic])
        self.producer = log_.producer()
        self.copied = 0
        self.malformed = 0

    def step(self, poll_timeout_s: float = 0.2) -> int:
        records = self.consumer.poll(poll_timeout_s, self.settings.poll_max_records)
        if not records:
            return 0
        topic = self.settings.keyed_log_topic
        for record in records:
            request_id = record.header(H_REQUEST_ID)
            if not request_id:
                self.malformed += 1
                log.warning("rekey: %s@%d has no requestid header; skipped", record.tp, record.offset)
                continue
            self.producer.send(
                topic, record.value, key=request_id, headers=record.headers, timestamp_ms=record.timestamp_ms
            )
            self.copied += 1
        self.producer.flush()
        try:
            self.consumer.commit()
        except CommitFailedError as exc:
            log.warning("rekey: %s", exc)
        return len(records)

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
