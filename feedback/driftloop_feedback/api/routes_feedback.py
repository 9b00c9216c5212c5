"""``POST /v1/feedback`` and ``GET /v1/feedback/stats``."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, status

from driftloop.eventlog import EventLogError
from driftloop_feedback.api.deps import Authorized, State
from driftloop_feedback.api.models import (
    FeedbackAccepted,
    FeedbackBatch,
    FeedbackItem,
    FeedbackStats,
    RecordStatus,
    TruthByPrediction,
)
from driftloop_feedback.records import Reading, TruthRecord

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], dependencies=[Authorized])


def _records(item: FeedbackItem, received_at: float) -> list[tuple[str, TruthRecord | Reading]]:
    """(key, record) pairs: one truth record per row, or one reading."""
    if isinstance(item, TruthByPrediction):
        if isinstance(item.truth, list):
            if item.row is not None:
                raise HTTPException(422, "give either a truth list (one per row) or a scalar truth and row")
            values = list(enumerate(item.truth))
        else:
            values = [(item.row or 0, item.truth)]
        return [(item.request_id, TruthRecord(item.request_id, r, v, received_at)) for r, v in values]
    return [(item.asset_id, Reading(item.asset_id, item.event_time, dict(item.values)))]


@router.post("", status_code=status.HTTP_200_OK)
def post_feedback(body: FeedbackBatch | FeedbackItem, state: State) -> FeedbackAccepted:
    """Accept one record or ``{"records": [...]}``; answers only after the log acknowledged them."""
    items = body.records if isinstance(body, FeedbackBatch) else [body]
    if len(items) > state.settings.max_batch:
        state.count("rejected")
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"{len(items)} records in one request; the limit is {state.settings.max_batch} "
            "(DRIFTLOOP_FEEDBACK_MAX_BATCH): split the batch",
        )
    now = time.time()
    pairs = [pair for item in items for pair in _records(item, now)]
    statuses: list[RecordStatus] = []
    fresh: list[str] = []
    topic = state.settings.feedback_topic
    with state.lock:
        try:
            for key, record in pairs:
                rid = record.record_id
                if rid in state.recent or rid in fresh:
                    statuses.append(RecordStatus(record_id=rid, status="duplicate"))
                    continue
                state.producer.send(topic, record.encode(), key=key.encode())
                fresh.append(rid)
                statuses.append(RecordStatus(record_id=rid, status="accepted"))
            state.producer.flush(state.settings.ack_timeout_s)
        except EventLogError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the event log did not acknowledge the records ({exc}); nothing is confirmed: resend "
                "the same request (resending is idempotent)",
            ) from exc
        for rid in fresh:
            state.recent.add(rid)
        state.batches += 1
    state.count("accepted", len(fresh))
    state.count("duplicate", len(pairs) - len(fresh))
    return FeedbackAccepted(accepted=len(fresh), duplicates=len(pairs) - len(fresh), records=statuses)


@router.get("/stats")
def feedback_stats(state: State) -> FeedbackStats:
    return FeedbackStats(
        accepted=state.total("accepted"),
        duplicates=state.total("duplicate"),
        rejected=state.total("rejected"),
        batches=state.batches,
        topic=state.settings.feedback_topic,
    )
