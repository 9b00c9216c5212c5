"""HTTP/1.1 keep-alive connections from the ingress to the graph's MLServer processes.

The node call is the ingress's hot path: one request per graph node per inference. A general client
(httpx -> httpcore -> anyio + h11) spent ~0.35 ms of CPU per call here; this one is an asyncio
``Protocol`` over the C parser httptools (already what uvicorn uses), with a per-origin pool of idle
connections, and costs a small fraction of that. It supports exactly what the ingress needs:

- requests with a ``Content-Length`` body (or none), responses with ``Content-Length``, chunked or
  read-until-close bodies;
- keep-alive: a connection goes back to the pool after a complete response the server did not mark
  ``Connection: close`` and that is not a 5xx (uvicorn closes the connection after an application
  error, a moment after its 500 answer); idle connections expire after ``keepalive_expiry_s`` (below
  uvicorn's 5 s, so the ingress never reuses a connection the server is about to close), and one
  the server closed while idle is dropped when its end-of-file is read;
- at most ``max_connections`` per origin; callers beyond that wait (up to the pool timeout);
- connect / read timeouts, raised as :class:`UpstreamError` subclasses, as is a connection that
  breaks mid-response. One case is retried, once, on a new connection: a connection taken from the
  pool that the server closed before any byte of an answer came back (:class:`UpstreamClosed`: the
  server had closed it while idle, so it never read the request). Nothing else is retried: a node
  call is not assumed idempotent.

``request`` is a coroutine; ``try_request`` makes the same exchange on an idle connection and reports
its outcome to a callback instead (the ingress's path without a task per request), or declines at once
when no idle connection is there, so the caller can ``await request`` instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

from driftloop_graphs.socket_write import socket_fd, write_now

parse_response: Callable[[bytes, int], tuple[int, str | None, bytes, bool, int] | None] | None
try:  # C: a whole plain response in one call (see _httpfast.c); without it every response goes to httptools
    from driftloop_graphs._httpfast import parse_response
except ImportError:  # a source tree without the built extension
    parse_response = None

logger = logging.getLogger(__name__)


class UpstreamError(Exception):
    """The node could not be reached or broke the exchange; ``str()`` says how."""


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamClosed(UpstreamError):
    """The server closed the connection before any byte of its answer came back."""


@dataclass(slots=True)  # made per request: a frozen dataclass's __init__ costs 4x
class UpstreamResponse:
    status: int
    body: bytes
    content_type: str | None


Outcome = Callable[["UpstreamResponse | UpstreamError"], None]


class _Connection(asyncio.Protocol):
    """One connection; at most one exchange at a time (no pipelining)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._fd = -1
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._outcome: Outcome | None = None  # instead of the waiter: ``send_then``
        self._body: list[bytes] = []
        self._content_type: bytes | None = None
        self._last_header = b""
        self._in_message = False  # httptools holds part of a response: the next bytes go to it
        self._answered = False  # a byte of the current exchange's answer has come back
        # The read timeout: one timer per connection, re-armed only when it fires, instead of a
        # call_later + cancel per exchange (see ``_check_read_timeout``).
        self._read_timeout_s = 0.0
        self._exchange_started = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self._fd = socket_fd(transport)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        if not self._in_message and parse_response is not None:
            parsed = parse_response(data, 0)
            if parsed is not None and parsed[4] == len(data):  # exactly one whole plain response
                status, content_type, body, keep_alive, _ = parsed
                self._complete(status, body, content_type, keep_alive)
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the server tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"malformed HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._exchanging():
            return
        with contextlib.suppress(httptools.HttpParserError):  # a body ended by the close is complete
            self._parser.feed_data(b"")
        if self._exchanging():
            reason = f": {exc}" if exc else ""
            if not self._answered:
                self._settle(UpstreamClosed(f"the server closed the connection before answering{reason}"))
            else:
                self._settle(UpstreamError(f"the server closed the connection mid-exchange{reason}"))

    # -- httptools callbacks ----------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_begin(self) -> None:
        self._in_message = True

    def on_message_complete(self) -> None:
        self._in_message = False
        body = b"".join(self._body)
        content_type = self._content_type.decode("latin-1") if self._content_type is not None else None
        self._complete(self._parser.get_status_code(), body, content_type, self._parser.should_keep_alive())

    def _complete(self, status: int, body: bytes, content_type: str | None, keep_alive: bool) -> None:
        if not keep_alive or status >= 500:  # uvicorn closes after an application error's 500
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        if self._exchanging():
            self._settle(UpstreamResponse(status, body, content_type))

    def _exchanging(self) -> bool:
        """Whether an exchange is waiting for its outcome."""
        if self._outcome is not None:
            return True
        return self._waiter is not None and not self._waiter.done()

    def _settle(self, outcome: UpstreamResponse | UpstreamError) -> None:
        """Report the exchange's outcome to its waiter or its callback (once)."""
        callback, self._outcome = self._outcome, None
        if callback is not None:
            callback(outcome)
        elif self._waiter is not None and not self._waiter.done():
            if isinstance(outcome, UpstreamError):
                self._waiter.set_exception(outcome)
            else:
                self._waiter.set_result(outcome)

    # -- exchange ---------------------------------------------------------------------------------
    def send(self, request: bytes, read_timeout_s: float) -> asyncio.Future[UpstreamResponse]:
        """Write ``request``; the future gets the response, or :class:`UpstreamTimeout` when none has
        come within ``read_timeout_s``."""
        assert self._waiter is None and self._outcome is None, "one exchange at a time"
        self._waiter = self._loop.create_future()
        self._write(request, read_timeout_s)
        return self._waiter

    def send_then(self, request: bytes, read_timeout_s: float, outcome: Outcome) -> None:
        """``send``, with the response or the error (the same ones) passed to ``outcome``."""
        assert self._waiter is None and self._outcome is None, "one exchange at a time"
        self._outcome = outcome
        self._write(request, read_timeout_s)

    def _write(self, request: bytes, read_timeout_s: float) -> None:
        assert self.transport is not None
        # sent first: the answer cannot be read before this callback returns to the loop
        self._answered = False
        write_now(self.transport, self._fd, request)
        self._body = []
        self._content_type = None
        self._read_timeout_s = read_timeout_s
        self._exchange_started = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(read_timeout_s, self._check_read_timeout)

    def _check_read_timeout(self) -> None:
        self._timer = None
        if self.closed or not self._exchanging():
            return  # idle: the next send arms the timer again
        waited = self._loop.time() - self._exchange_started
        if waited >= self._read_timeout_s:
            self._settle(UpstreamTimeout(f"no response within {self._read_timeout_s:g} s"))
        else:  # this exchange started after the timer was armed: check again when it is due
            self._timer = self._loop.call_later(self._read_timeout_s - waited, self._check_read_timeout)

    def finish(self) -> None:
        self._waiter = None
        self._outcome = None

    def _fail(self, error: UpstreamError) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        if self._exchanging():
            self._settle(error)

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Origin:
    """The idle connections and the connection budget for one host:port."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.host_header = f"{host}:{port}".encode("latin-1")
        self.max_connections = max_connections
        self.idle: collections.deque[_Connection] = collections.deque()
        self.connections: set[_Connection] = set()  # idle and in use
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


def _encode(
    origin: _Origin, method: str, path: str, body: bytes, headers: tuple[tuple[bytes, bytes], ...]
) -> bytes:
    head = [
        f"{method} {path} HTTP/1.1\r\n".encode("latin-1"),
        b"host: ",
        origin.host_header,
        b"\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\n",
    ]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    head += [b"\r\n", body]
    return b"".join(head)


class UpstreamPool:
    def __init__(
        self,
        *,
        max_connections: int = 512,
        keepalive_expiry_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        pool_timeout_s: float = 60.0,
    ) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry_s = keepalive_expiry_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.pool_timeout_s = pool_timeout_s
        self._origins: dict[tuple[str, int], _Origin] = {}
        self._closed = False
        self._resends: set[asyncio.Task[None]] = set()

    async def request(
        self,
        method: str,
        host: str,
        port: int,
        path: str,
        body: bytes = b"",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> UpstreamResponse:
        if self._closed:
            raise UpstreamError("the connection pool is closed")
        origin = self._origin(host, port)
        wire = _encode(origin, method, path, body, headers)
        connection, reused = await self._acquire(origin)
        try:
            return await self._exchange(origin, connection, wire)
        except UpstreamClosed:
            if not reused:
                raise
        connection, _ = await self._acquire(origin, fresh=True)  # once (see the module docstring)
        return await self._exchange(origin, connection, wire)

    async def _exchange(self, origin: _Origin, connection: _Connection, wire: bytes) -> UpstreamResponse:
        waiter = connection.send(wire, self.read_timeout_s)
        try:
            return await waiter
        except BaseException:
            connection.abort()  # cancelled or failed mid-exchange: the connection's state is unknown
            raise
        finally:
            connection.finish()
            self._release(origin, connection)

    def try_request(
        self,
        method: str,
        host: str,
        port: int,
        path: str,
        body: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        outcome: Outcome,
    ) -> bool:
        """``request`` on an idle connection, its response or error passed to ``outcome`` (once, from
        a later callback). False, at once and with nothing sent, when no idle connection is there."""
        taken = self._idle_connection(host, port)
        if taken is None:
            return False
        origin, connection = taken
        wire = _encode(origin, method, path, body, headers)
        self._send_then(origin, connection, wire, outcome, f"{method} {path}")
        return True

    def try_send(self, host: str, port: int, wire: bytes, outcome: Outcome, what: str) -> bool:
        """``try_request`` with the request already encoded (``wire``: request line, headers with
        ``host`` and ``content-length``, body), as a caller that sends the same head every time builds
        it; ``what`` names the request in the log if ``outcome`` fails."""
        taken = self._idle_connection(host, port)
        if taken is None:
            return False
        self._send_then(*taken, wire, outcome, what)
        return True

    def _idle_connection(self, host: str, port: int) -> tuple[_Origin, _Connection] | None:
        if self._closed:
            return None
        origin = self._origin(host, port)
        connection = self._take_idle(origin)
        return None if connection is None else (origin, connection)

    def _send_then(
        self, origin: _Origin, connection: _Connection, wire: bytes, outcome: Outcome, what: str
    ) -> None:
        """Send ``wire`` on ``connection`` (taken idle from ``origin``); its outcome to ``outcome``,
        then the connection back to the pool."""
        host, port = origin.host, origin.port

        def settled(result: UpstreamResponse | UpstreamError) -> None:
            if isinstance(result, UpstreamError):
                connection.abort()  # its state is unknown
            connection.finish()
            if isinstance(result, UpstreamClosed) and not self._closed:  # closed while idle: once more
                self._release(origin, connection)
                task = asyncio.get_running_loop().create_task(self._resend(origin, wire, outcome, what))
                self._resends.add(task)
                task.add_done_callback(self._resends.discard)
                return
            try:  # the caller's answer first; the connection is idle again right after
                outcome(result)
            except Exception:  # a caller's bug must not break this connection's protocol callbacks
                logger.exception("upstream: the callback for %s to %s:%d failed", what, host, port)
            finally:
                self._release(origin, connection)

        connection.send_then(wire, self.read_timeout_s, settled)

    async def _resend(self, origin: _Origin, wire: bytes, outcome: Outcome, what: str) -> None:
        """``_send_then``'s one retry, on a new connection; its outcome to ``outcome``."""
        result: UpstreamResponse | UpstreamError
        try:
            connection, _ = await self._acquire(origin, fresh=True)
            result = await self._exchange(origin, connection, wire)
        except UpstreamError as exc:
            result = exc
        try:
            outcome(result)
        except Exception:
            logger.exception("upstream: the callback for %s to %s:%d failed", what, origin.host, origin.port)

    def _origin(self, host: str, port: int) -> _Origin:
        origin = self._origins.get((host, port))
        if origin is None:
            origin = self._origins[(host, port)] = _Origin(host, port, self.max_connections)
        return origin

    async def _acquire(self, origin: _Origin, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection to ``origin`` and whether it was taken from the pool (``fresh``: a new one)."""
        while True:
            connection = None if fresh else self._take_idle(origin)
            if connection is not None:
                return connection, True
            if origin.open < origin.max_connections:
                break
            waiter = asyncio.get_running_loop().create_future()
            origin.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, self.pool_timeout_s)
            except TimeoutError:
                raise UpstreamTimeout(
                    f"no connection to {origin.host}:{origin.port} free within {self.pool_timeout_s:.0f} s "
                    f"({origin.max_connections} in use)"
                ) from None
            finally:
                if waiter in origin.waiters:
                    origin.waiters.remove(waiter)
        origin.open += 1
        try:
            return await self._connect(origin), False
        except BaseException:
            origin.open -= 1
            self._wake(origin)
            raise

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        now = time.monotonic()
        while origin.idle:
            connection = origin.idle.pop()  # the most recently used: warmest, least likely expired
            if not connection.closed and now - connection.idle_since < self.keepalive_expiry_s:
                return connection
            origin.open -= 1
            origin.connections.discard(connection)
            connection.abort()
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop), origin.host, origin.port),
                self.connect_timeout_s,
            )
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to {origin.host}:{origin.port} timed out after {self.connect_timeout_s:.0f} s"
            ) from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        origin.connections.add(protocol)
        return protocol

    def _release(self, origin: _Origin, connection: _Connection) -> None:
        if connection.closed or self._closed:
            origin.open -= 1
            origin.connections.discard(connection)
            connection.abort()
        else:
            connection.idle_since = time.monotonic()
            origin.idle.append(connection)
        self._wake(origin)

    @staticmethod
    def _wake(origin: _Origin) -> None:
        while origin.waiters:
            waiter = origin.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._resends):
            task.cancel()
        for origin in self._origins.values():
            for connection in origin.connections:  # in-use ones too: their callers get an error
                connection.abort()
            origin.connections.clear()
            origin.idle.clear()
            origin.open = 0
