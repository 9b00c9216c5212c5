"""The app factory: nothing is built at import time. Every answer >= 400 has the ``ErrorBody`` shape
and is counted (``Accounting``)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from driftloop.eventlog import EventLog
from driftloop_feedback.api import routes_feedback, routes_health
from driftloop_feedback.api.deps import Clock, ServiceState
from driftloop_feedback.api.intake import body_schema
from driftloop_feedback.api.ledger import RecordLedger
from driftloop_feedback.api.middleware import Accounting, BodyLimit
from driftloop_feedback.api.problems import ApiError, error_response, field_errors
from driftloop_feedback.api.settings import FeedbackSettings

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def create_app(settings: FeedbackSettings, event_log: EventLog, *, clock: Clock = time.time) -> FastAPI:
    """The feedback service writing to ``event_log`` (the caller owns and closes the log)."""
    event_log.create_topic(settings.feedback_topic, settings.partitions)
    app = FastAPI(title="driftloop feedback", version="1")
    app.state.feedback = ServiceState(
        settings=settings,
        event_log=event_log,
        producer=event_log.producer(),
        ledger=RecordLedger(settings.dedupe_window),
        clock=clock,
    )
    app.include_router(routes_feedback.router)
    app.include_router(routes_health.router)

    @app.exception_handler(ApiError)
    async def _refused(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(
            ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = field_errors(exc.errors())
        return error_response(ApiError(422, "invalid_request", "the request is not valid", fields))

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Accounting)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the request body's schema (the route reads the body itself)."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(body_schema())
        app.openapi_schema = document
    return app.openapi_schema
