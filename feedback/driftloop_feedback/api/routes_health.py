"""Health and Prometheus metrics (no auth: probes and scrapers)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from driftloop_feedback.api.deps import State
from driftloop_feedback.api.models import Health

router = APIRouter(tags=["health"])


@router.get("/health/live")
@router.get("/health/ready")
def health() -> Health:
    return Health(status="ok")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
def metrics(state: State) -> Response:
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
