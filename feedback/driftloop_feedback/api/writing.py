"""Rows to the event log, each at most once per process: claimed in the ledger, sent outside any lock,
acknowledged one by one, so a failure names exactly what was and was not written."""

from __future__ import annotations

import time

from driftloop.eventlog import Delivery, EventLogError, Producer
from driftloop_feedback.api.intake import Row
from driftloop_feedback.api.ledger import Claim, RecordLedger
from driftloop_feedback.api.models import FeedbackAccepted, RecordStatus
from driftloop_feedback.api.problems import ApiError

MAX_CLAIM_ROUNDS = 5


class PartialWrite(ApiError):
    """503: the log acknowledged only ``written`` of the request's new records."""

    def __init__(self, written: int, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.written = written


def write_rows(
    rows: list[Row], ledger: RecordLedger, producer: Producer, topic: str, ack_timeout_s: float
) -> FeedbackAccepted:
    claim = _claim(ledger, [row.record_id for row in rows], ack_timeout_s)
    written: list[str] = []
    errors: list[str] = []
    try:
        written = _send(rows, claim, producer, topic, ack_timeout_s, errors)
    finally:
        ledger.settle(claim, written)
    if len(written) < len(claim.fresh):
        raise PartialWrite(
            len(written),
            503,
            "log_unavailable",
            f"the event log acknowledged {len(written)} of the {len(claim.fresh)} new records "
            f"({errors[0] if errors else 'no answer'}); resend the same request: the acknowledged ones "
            "are answered 'duplicate' and not written twice",
        )
    fresh = set(claim.fresh)
    statuses: list[RecordStatus] = []
    for row in rows:
        if row.record_id in fresh:
            fresh.discard(row.record_id)
            statuses.append(RecordStatus(record_id=row.record_id, status="accepted"))
        else:
            statuses.append(RecordStatus(record_id=row.record_id, status="duplicate"))
    accepted = len(claim.fresh)
    return FeedbackAccepted(accepted=accepted, duplicates=len(rows) - accepted, records=statuses)


def _claim(ledger: RecordLedger, ids: list[str], timeout_s: float) -> Claim:
    """Claim ``ids``; while another request writes some of them, let go, wait for it, claim again."""
    for _ in range(MAX_CLAIM_ROUNDS):
        claim = ledger.claim(ids)
        if not claim.busy:
            return claim
        ledger.settle(
            claim, written=()
        )  # never wait while holding ids (two requests could wait on each other)
        for write in claim.waits:
            write.done.wait(timeout_s)
    raise ApiError(
        503,
        "busy",
        "other requests kept writing records of this request; resend it (nothing of it was written)",
    )


def _send(
    rows: list[Row], claim: Claim, producer: Producer, topic: str, ack_timeout_s: float, errors: list[str]
) -> list[str]:
    """Ids of the claimed rows the log acknowledged, in order; stops at the first refused send. The
    log's error messages go to ``errors``."""
    fresh = set(claim.fresh)
    sent: list[tuple[str, Delivery]] = []
    for row in rows:
        if row.record_id not in fresh:
            continue
        fresh.discard(row.record_id)
        try:
            sent.append((row.record_id, producer.send(topic, row.value, key=row.key)))
        except EventLogError as exc:
            errors.append(str(exc))
            break
    deadline = time.monotonic() + ack_timeout_s
    written: list[str] = []
    for record_id, delivery in sent:
        try:
            delivery.get(max(0.0, deadline - time.monotonic()))
        except EventLogError as exc:
            errors.append(str(exc))
            continue
        written.append(record_id)
    return written
