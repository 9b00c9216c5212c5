"""ASGI middleware of the feedback API: ``BodyLimit`` (413 over the byte cap, by Content-Length or
while a chunked body streams in) and ``Accounting`` (counts every answer >= 400 and turns anything
unhandled into the API's JSON 500, logged here, with no internals in the answer)."""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftloop_feedback.api.deps import ServiceState
from driftloop_feedback.api.problems import ApiError, error_response

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a body passes the cap; ``BodyLimit`` answers 413."""


class BodyLimit:
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
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        error = ApiError(
            413,
            "body_too_large",
            f"the request body exceeds {self.max_bytes} bytes (DRIFTLOOP_FEEDBACK_MAX_BODY_BYTES): "
            "send smaller batches",
            headers={"Connection": "close"},
        )
        await error_response(error)(scope, _disconnected, send)


class Accounting:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: ServiceState = scope["app"].state.feedback
        started = False

        async def observed(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    state.refused(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        except Exception:
            log.exception("feedback API: unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            error = ApiError(500, "internal", "the feedback API failed on this request; it is logged there")
            await error_response(error)(scope, _disconnected, observed)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}
