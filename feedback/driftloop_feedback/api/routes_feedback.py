"""``POST /v1/feedback`` and ``GET /v1/feedback/stats``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from driftloop_feedback.api.deps import Authorized, ServiceState, State
from driftloop_feedback.api.intake import intake
from driftloop_feedback.api.models import ErrorBody, FeedbackAccepted, FeedbackStats
from driftloop_feedback.api.writing import PartialWrite, write_rows

ERRORS = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "the body is not JSON, or not UTF-8",
        401: "missing or wrong bearer token",
        413: "over the byte cap (MAX_BODY_BYTES) or the row cap (MAX_ROWS)",
        422: "valid JSON that is not a feedback body; `fields` names each wrong value",
        503: "the event log did not acknowledge every record; resend the same request",
    }.items()
}

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], dependencies=[Authorized])


@router.post(
    "",
    response_model=FeedbackAccepted,
    responses=ERRORS,  # type: ignore[arg-type]
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackBody"}}},
        }
    },
)
async def post_feedback(request: Request, state: State) -> FeedbackAccepted:
    """Accept one record or ``{"records": [...]}``: validated whole, then written; answers only after
    the log acknowledged every record. Decoding and writing run in a worker thread, so a large request
    never holds the event loop."""
    body = await request.body()
    return await run_in_threadpool(_accept, state, body)


def _accept(state: ServiceState, body: bytes) -> FeedbackAccepted:
    settings = state.settings
    rows = intake(body, settings.max_rows, state.clock())
    try:
        accepted = write_rows(
            rows, state.ledger, state.producer, settings.feedback_topic, settings.ack_timeout_s
        )
    except PartialWrite as exc:
        state.count("accepted", exc.written)
        raise
    state.count("accepted", accepted.accepted)
    state.count("duplicate", accepted.duplicates)
    state.batches.inc()
    return accepted


@router.get("/stats", responses={401: ERRORS[401]})
def feedback_stats(state: State) -> FeedbackStats:
    refused = state.refused_by_status()
    return FeedbackStats(
        accepted=state.total("accepted"),
        duplicates=state.total("duplicate"),
        rejected=sum(refused.values()),
        refused=refused,
        batches=state.batches_total(),
        topic=state.settings.feedback_topic,
    )
