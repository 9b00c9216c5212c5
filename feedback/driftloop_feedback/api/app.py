"""The app factory: nothing is built at import time."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftloop.eventlog import EventLog
from driftloop_feedback.api import routes_feedback, routes_health
from driftloop_feedback.api.deps import RecentIds, ServiceState
from driftloop_feedback.api.settings import FeedbackSettings


class BodyLimit:
    """413 for bodies over ``max_bytes`` (by Content-Length, or counted while streaming)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        state: ServiceState = scope["app"].state.feedback
        state.count("rejected")
        detail = (
            f"request body exceeds {self.max_bytes} bytes (DRIFTLOOP_FEEDBACK_MAX_BODY_BYTES): "
            "send smaller batches"
        )
        response = JSONResponse({"detail": detail}, status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
        await response(scope, _noop_receive, send)


class _TooLarge(Exception):
    pass


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: FeedbackSettings, event_log: EventLog) -> FastAPI:
    """The feedback service writing to ``event_log`` (the caller owns and closes the log)."""
    event_log.create_topic(settings.feedback_topic, settings.partitions)
    app = FastAPI(title="driftloop feedback", version="1")
    app.state.feedback = ServiceState(
        settings=settings,
        event_log=event_log,
        producer=event_log.producer(),
        recent=RecentIds(settings.dedupe_window),
    )
    app.include_router(routes_feedback.router)
    app.include_router(routes_health.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        app.state.feedback.count("rejected")
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"], "type": err["type"]}
            for err in exc.errors()
        ][:50]
        return JSONResponse({"detail": errors}, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
