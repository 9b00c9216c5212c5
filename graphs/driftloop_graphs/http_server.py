"""The ingress's HTTP/1.1 server: an asyncio ``Protocol`` over the C parser httptools.

uvicorn + Starlette cost the ingress ~0.1 ms of CPU per request in ASGI messages, middleware and
routing before a handler ran; the ingress needs none of that generality. This server gives each
complete request to one handler coroutine and writes its response:

- keep-alive (HTTP/1.1 default; ``Connection: close`` and HTTP/1.0 honoured), pipelined requests
  answered in order, idle connections closed after ``keepalive_timeout_s``;
- ``Content-Length`` and chunked request bodies (httptools decodes chunks), ``Expect: 100-continue``;
- bodies over ``max_body_bytes`` answered 413, malformed requests 400, more than
  ``max_header_count`` headers or ``max_header_bytes`` of request line and headers 431, request line
  and headers not complete within ``header_timeout_s`` of their first byte (or of the connection's
  start) 408, all as JSON errors (``errors.error_body``) followed by a close, and each reported to
  ``refused``; a handler that raises is answered 500 with a JSON message (logged here, no stack trace
  to the client);
- back-pressure: a connection stops reading while its responses cannot be written;
- ``stop()`` stops accepting, lets in-flight requests finish (up to a deadline) and closes the rest.

A request can also be answered without a coroutine: the optional ``fast`` handler is offered each
request that arrives on a connection with nothing else in progress. If it takes the request (returns
True) it answers later, from a callback, through the ``respond`` function it was given; requests
pipelined meanwhile wait their turn. If it declines, the request goes to ``handler`` as usual. An
asyncio task per request (creation, scheduling, a future per await) was ~20 us of the ingress's CPU
per request, about a sixth of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import http
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

from driftloop_graphs.errors import error_body
from driftloop_graphs.socket_write import socket_fd, write_now

parse_request: Callable[[bytes, int, int], tuple[str, str, dict[str, str], bytes, bool, int] | None] | None
try:  # C: one call per complete plain message (see _httpfast.c); without it every message goes to httptools
    from driftloop_graphs._httpfast import parse_request
except ImportError:  # a source tree without the built extension
    parse_request = None

logger = logging.getLogger(__name__)

JSON = "application/json"
MAX_PIPELINED = 16  # parsed requests waiting on one connection before it stops reading


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass(slots=True)  # made per request: a frozen dataclass's __init__ costs 4x
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str | None = JSON
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]
Responder = Callable[[HttpResponse], None]
FastHandler = Callable[[HttpRequest, Responder], bool]  # True: taken, ``respond`` will be called once


Refused = Callable[[int, str], None]  # (status, code) of a request the server refused itself


def json_error(status: int, code: str, message: str) -> HttpResponse:
    return HttpResponse(status, error_body(code, message))


_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in http.HTTPStatus}


def encode_response(response: HttpResponse, keep_alive: bool) -> bytes:
    status, content_type, body = response.status, response.content_type, response.body
    start = _STARTS.get((status, content_type))
    if start is None:
        start = _start(status, content_type)
    headers = response.headers
    if len(headers) == 1:  # the usual answer: one Seldon-Puid (no comprehension, a call of its own)
        name, value = headers[0]
        extra = f"{name}: {value}\r\n"
    else:
        extra = "".join([f"{name}: {value}\r\n" for name, value in headers])
    if not keep_alive:
        extra += "connection: close\r\n"
    return b"%scontent-length: %d\r\n%s\r\n%s" % (start, len(body), extra.encode("latin-1"), body)


_STARTS: dict[tuple[int, str | None], bytes] = {}  # (status, content type) -> status line + content-type


def _start(status: int, content_type: str | None) -> bytes:
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"
    if content_type is not None:
        line += f"content-type: {content_type}\r\n"
    start = line.encode("latin-1")
    if len(_STARTS) < 256:  # the few pairs a deployment answers with, not whatever a node sends
        _STARTS[(status, content_type)] = start
    return start


class _HttpConnection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._parser = httptools.HttpRequestParser(self)
        self._url: list[bytes] = []
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._rejected = False
        self._in_message = False  # httptools holds part of a message: the next bytes go to it
        # parsed requests (or an error answer found while parsing) with their keep-alive, in order
        self._pending: collections.deque[tuple[HttpRequest | HttpResponse, bool]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._fast: HttpRequest | None = None  # the request the fast handler took, until answered
        self._fast_keep_alive = True
        self._write_paused = False
        self._read_paused = False
        # One timer per connection, re-armed only when it fires: touching a timer on every request
        # (cancel + call_later) costs more than the check it saves.
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        # the request line and headers being received (httptools): since when, and their size
        self._head_started: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self.closed = False

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._fd = socket_fd(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server.connections.add(self)
        self._last_activity = self._loop.time()
        self._arm_idle_timer()
        self._start_head()  # the first request's line and headers are due within header_timeout_s

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        self._cancel_idle_timer()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        if self._rejected:
            return
        if not self._in_message and parse_request is not None:
            # whole plain requests in one call each; the rest (or all, for anything else) to httptools
            offset, size, limit = 0, len(data), self._server.max_body_bytes
            while offset < size and not self._rejected:
                parsed = parse_request(data, offset, limit)
                if parsed is None:
                    break
                method, path, headers, body, keep_alive, end = parsed
                if end - offset - len(body) > self._server.max_header_bytes:
                    self._headers_too_large()
                    return
                if len(headers) > self._server.max_header_count:
                    self._too_many_headers()
                    return
                offset = end
                self._dispatch(HttpRequest(method, path, headers, body), keep_alive)
            if offset == size:
                return
            if offset:
                data = data[offset:]
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrade_refused", "protocol upgrades are not supported by the ingress")
        except httptools.HttpParserError as exc:
            self._reject(400, "malformed_request", f"malformed HTTP request: {exc}")

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if len(self._pending) <= MAX_PIPELINED:
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None and not self._rejected:
            self._read_paused = False
            self._transport.resume_reading()

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True
        self._url = []
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._head_bytes = 0
        if self._head_started is None:
            self._start_head()

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._rejected:
            return
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        self._count_head(len(name) + len(value) + 4)
        if len(self._headers) > self._server.max_header_count:
            self._too_many_headers()

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self._server.max_header_bytes and not self._rejected:
            self._headers_too_large()

    def on_headers_complete(self) -> None:
        self._head_started = None
        if self._rejected:
            return
        length = self._headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._server.max_body_bytes:
            self._too_large()
            return
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._rejected:
            return
        self._body_size += len(body)
        if self._body_size > self._server.max_body_bytes:
            self._too_large()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._rejected:
            return
        target = b"".join(self._url)
        if target[:1] == b"/":  # origin-form, what clients send a server: the path ends at ? or #
            path = target.partition(b"?")[0].partition(b"#")[0]
        else:  # absolute-form (http://host/path), as sent to proxies
            path = httptools.parse_url(target).path or b"/"
        request = HttpRequest(
            method=self._parser.get_method().decode("latin-1"),
            path=path.decode("latin-1"),
            headers=self._headers,
            body=b"".join(self._body),
        )
        self._dispatch(request, self._parser.should_keep_alive())

    def _dispatch(self, request: HttpRequest, keep_alive: bool) -> None:
        """A complete request: to the fast handler if the connection is idle and it takes it, else
        queued for ``_serve`` (in order, behind what is pending)."""
        self._head_started = None
        idle = self._task is None and self._fast is None and not self._pending
        if idle and self._offer_fast(request, keep_alive):
            return
        self._pending.append((request, keep_alive))
        if self._task is None and self._fast is None:
            self._task = self._loop.create_task(self._serve())
        if len(self._pending) > MAX_PIPELINED:
            self._pause_reading()  # a client pipelining far ahead waits for its answers

    # -- requests ---------------------------------------------------------------------------------
    def _offer_fast(self, request: HttpRequest, keep_alive: bool) -> bool:
        """Give ``request`` to the server's fast handler; whether it took it."""
        fast = self._server.fast
        if fast is None:
            return False
        self._fast, self._fast_keep_alive = request, keep_alive
        self._server.in_flight += 1
        try:
            taken = fast(request, self._fast_answered)
        except Exception as exc:
            if self._fast is request:  # not answered yet: as a handler that raised is
                self._fast_answered(self._server.failed(request, exc))
            return True
        if not taken:  # declined (without answering): the coroutine handler gets it
            self._fast = None
            self._server.in_flight -= 1
        return taken

    def _fast_answered(self, response: HttpResponse) -> None:
        """The fast handler's answer: written like ``_serve`` writes one; then what queued behind it."""
        if self._fast is None:
            return  # answered already (a handler must answer once; a second answer is ignored)
        self._fast = None
        self._server.in_flight -= 1
        self._last_activity = self._loop.time()
        if self.closed or self._transport is None:
            return
        keep_alive = self._fast_keep_alive and not self._server.stopping
        write_now(self._transport, self._fd, encode_response(response, keep_alive))
        if not keep_alive:
            self._transport.close()
            return
        if self._pending:
            self._task = self._loop.create_task(self._serve())
        elif not self._write_paused:
            self._resume_reading()

    async def _serve(self) -> None:
        try:
            while self._pending:
                item, keep_alive = self._pending.popleft()
                if isinstance(item, HttpResponse):
                    response = item
                else:
                    self._server.in_flight += 1
                    try:
                        response = await self._server.handler(item)
                    except Exception as exc:
                        response = self._server.failed(item, exc)
                    finally:
                        self._server.in_flight -= 1
                if self.closed or self._transport is None:
                    return
                keep_alive = keep_alive and not self._server.stopping
                write_now(self._transport, self._fd, encode_response(response, keep_alive))
                if not keep_alive:
                    self._transport.close()
                    return
                if not self._write_paused and len(self._pending) <= MAX_PIPELINED:
                    self._resume_reading()
        finally:
            self._task = None
            self._last_activity = self._loop.time()

    def _too_large(self) -> None:
        limit = self._server.max_body_bytes
        self._reject(413, "body_too_large", f"request body larger than the ingress's limit of {limit} bytes")

    def _headers_too_large(self) -> None:
        limit = self._server.max_header_bytes
        message = f"request line and headers larger than the ingress's limit of {limit} bytes"
        self._reject(431, "headers_too_large", message)

    def _too_many_headers(self) -> None:
        limit = self._server.max_header_count
        self._reject(431, "headers_too_large", f"more than the ingress's limit of {limit} headers")

    def _start_head(self) -> None:
        self._head_started = self._loop.time()
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._server.header_timeout_s, self._head_check)

    def _head_check(self) -> None:
        """Close a connection whose request line and headers took over ``header_timeout_s`` (a
        client sending them a byte at a time holds a connection for nothing)."""
        self._head_timer = None
        if self.closed or self._head_started is None:
            return
        timeout = self._server.header_timeout_s
        waited = self._loop.time() - self._head_started
        if waited < timeout:
            self._head_timer = self._loop.call_later(timeout - waited, self._head_check)
            return
        busy = self._task is not None or self._fast is not None or self._pending
        if not busy and not self._in_message:
            self._server.report_refused(408, "header_timeout")
            self.close_if_idle()  # no request begun: nothing to answer
            return
        message = f"request line and headers not received within {timeout:g} s"
        self._reject(408, "header_timeout", message)

    def _reject(self, status: int, code: str, message: str) -> None:
        self._server.report_refused(status, code)
        response = json_error(status, code, message)
        self._pause_reading()
        self._rejected = True
        if self._transport is None:
            return
        if self._task is None and self._fast is None:  # nothing in flight: answer now, not out of turn
            self._transport.write(encode_response(response, keep_alive=False))
            self._transport.close()
        else:
            self._pending.append((response, False))

    def _arm_idle_timer(self, delay: float | None = None) -> None:
        timeout = self._server.keepalive_timeout_s
        self._idle_timer = self._loop.call_later(timeout if delay is None else delay, self._idle_check)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle_check(self) -> None:
        """Close a connection quiet for ``keepalive_timeout_s`` with nothing in progress (an idle
        keep-alive connection, or a client that stalled mid-request)."""
        self._idle_timer = None
        if self.closed:
            return
        quiet = self._loop.time() - self._last_activity
        timeout = self._server.keepalive_timeout_s
        busy = self._task is not None or self._fast is not None
        if not busy and not self._pending and quiet >= timeout:
            self.close_if_idle()
        else:
            self._arm_idle_timer(timeout if busy else max(0.01, timeout - quiet))

    def close_if_idle(self) -> None:
        busy = self._task is not None or self._fast is not None or self._pending
        if not busy and self._transport is not None and not self.closed:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class HttpServer:
    def __init__(
        self,
        handler: Handler,
        *,
        fast: FastHandler | None = None,
        max_body_bytes: int = 64 * 1024 * 1024,
        keepalive_timeout_s: float = 75.0,
        max_header_count: int = 100,
        max_header_bytes: int = 16 * 1024,
        header_timeout_s: float = 10.0,
        refused: Refused | None = None,
    ) -> None:
        self.handler = handler
        self.fast = fast
        self.max_body_bytes = max_body_bytes
        self.keepalive_timeout_s = keepalive_timeout_s
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes
        self.header_timeout_s = header_timeout_s
        self.refused = refused
        self.connections: set[_HttpConnection] = set()
        self.in_flight = 0
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "HttpServer.start() first"
        return self._loop

    async def start(self, sock: socket.socket, backlog: int = 4096) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _HttpConnection(self), sock=sock, backlog=backlog
        )

    def report_refused(self, status: int, code: str) -> None:
        if self.refused is not None:
            self.refused(status, code)

    @staticmethod
    def failed(request: HttpRequest, exc: Exception) -> HttpResponse:
        """The answer to a handler that raised: a message for the client, the stack trace for the log."""
        logger.error("ingress: %s %s failed", request.method, request.path, exc_info=exc)
        return json_error(
            500, "internal", f"the ingress failed on {request.method} {request.path}: {type(exc).__name__}"
        )

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop accepting; answer what is in flight (up to ``timeout_s``); close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
