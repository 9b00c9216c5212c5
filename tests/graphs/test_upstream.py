"""The ingress's node client against real loopback servers: reuse, expiry, limits, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from driftloop_graphs.upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


async def start(reply: Callable[[bytes], bytes | None], *, delay: float = 0.0) -> Server:
    state = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.writers.append(writer)
        state.connections += 1
        state.open_now += 1
        state.max_open = max(state.max_open, state.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                state.requests.append(head + body)
                await asyncio.sleep(delay)
                answer = reply(body)
                if answer is None:  # die mid-exchange
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
                    await writer.drain()
                    writer.transport.abort()
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            state.open_now -= 1
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    state.server = server
    return state


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    p = UpstreamPool(max_connections=4, keepalive_expiry_s=1.0, read_timeout_s=2.0, connect_timeout_s=2.0)
    yield p
    await p.aclose()


async def test_sequential_requests_reuse_one_connection(pool: UpstreamPool) -> None:
    state = await start(ok)
    for i in range(5):
        response = await pool.request("POST", "127.0.0.1", state.port, "/v2/x", b"%d" % i, ((b"x-a", b"1"),))
        assert (response.status, response.body, response.content_type) == (200, b"%d" % i, "application/json")
    assert state.connections == 1
    assert state.requests[0].startswith(b"POST /v2/x HTTP/1.1\r\n") and b"x-a: 1\r\n" in state.requests[0]
    await state.close()


async def test_connections_are_capped_and_waiters_served(pool: UpstreamPool) -> None:
    state = await start(ok, delay=0.05)
    results = await asyncio.gather(
        *(pool.request("POST", "127.0.0.1", state.port, "/", b"%d" % i) for i in range(12))
    )
    assert sorted(r.body for r in results) == sorted(b"%d" % i for i in range(12))
    assert state.max_open <= 4
    await state.close()


async def test_expired_idle_connection_is_not_reused(pool: UpstreamPool) -> None:
    state = await start(ok)
    await pool.request("GET", "127.0.0.1", state.port, "/")
    await asyncio.sleep(1.2)  # past keepalive_expiry_s
    await pool.request("GET", "127.0.0.1", state.port, "/")
    assert state.connections == 2
    await state.close()


async def test_connection_close_answer_is_not_reused(pool: UpstreamPool) -> None:
    def closing(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"

    state = await start(closing)
    for _ in range(3):
        assert (await pool.request("GET", "127.0.0.1", state.port, "/")).body == b"ok"
    assert state.connections == 3
    await state.close()


async def test_chunked_response_is_decoded(pool: UpstreamPool) -> None:
    def chunked(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n"

    state = await start(chunked)
    response = await pool.request("GET", "127.0.0.1", state.port, "/")
    assert (response.body, response.content_type) == (b"abcd", None)
    await state.close()


async def test_refused_connection_names_the_address(pool: UpstreamPool) -> None:
    state = await start(ok)
    await state.close()
    with pytest.raises(UpstreamError, match=f"cannot connect to 127.0.0.1:{state.port}"):
        await pool.request("GET", "127.0.0.1", state.port, "/")


async def test_server_dying_mid_response_is_an_error_and_the_pool_recovers(pool: UpstreamPool) -> None:
    calls = []

    def flaky(body: bytes) -> bytes | None:
        calls.append(body)
        return None if len(calls) == 1 else ok(b"fine")

    state = await start(flaky)
    with pytest.raises(UpstreamError, match="closed the connection mid-exchange"):
        await pool.request("GET", "127.0.0.1", state.port, "/")
    assert (await pool.request("GET", "127.0.0.1", state.port, "/")).body == b"fine"
    await state.close()


async def test_read_timeout(pool: UpstreamPool) -> None:
    state = await start(ok, delay=5)
    with pytest.raises(UpstreamTimeout, match="no response within 2 s"):
        await pool.request("GET", "127.0.0.1", state.port, "/")
    await state.close()


async def test_read_timeout_counts_from_each_exchange_on_a_reused_connection() -> None:
    """The read timer is armed once per connection: an exchange that starts late on a connection
    whose timer is already running still gets its full timeout, and a quick one is never cut."""
    pool = UpstreamPool(max_connections=1, read_timeout_s=1.0)
    delays = iter([0.0, 0.0, 0.7, 5.0])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(next(delays))
                writer.write(ok(b"done"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    try:
        await pool.request("GET", "127.0.0.1", port, "/")  # arms the connection's timer at t0
        await asyncio.sleep(0.5)
        await pool.request("GET", "127.0.0.1", port, "/")  # t0 + 0.5: answered at once
        # t0 + 0.5: answered after 0.7 s, past the first timer's due time (t0 + 1.0): not a timeout
        assert (await pool.request("GET", "127.0.0.1", port, "/")).body == b"done"
        started = loop.time()
        with pytest.raises(UpstreamTimeout, match="no response within 1 s"):
            await pool.request("GET", "127.0.0.1", port, "/")
        assert 0.95 <= loop.time() - started < 2.0  # its own full second, not a leftover
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


async def _outcome(pool: UpstreamPool, port: int, body: bytes = b"") -> UpstreamResponse | UpstreamError:
    """One ``try_request`` on the pool's idle connection, awaited through its callback."""
    done: asyncio.Future[UpstreamResponse | UpstreamError] = asyncio.get_running_loop().create_future()
    assert pool.try_request("POST", "127.0.0.1", port, "/v2/x", body, ((b"x-a", b"1"),), done.set_result)
    return await asyncio.wait_for(done, 5)


async def test_try_request_needs_an_idle_connection_and_reports_to_its_callback(pool: UpstreamPool) -> None:
    state = await start(ok)
    assert not pool.try_request("POST", "127.0.0.1", state.port, "/", b"", (), lambda _: None)
    assert state.connections == 0  # declined at once: nothing connected, nothing sent
    await pool.request("POST", "127.0.0.1", state.port, "/", b"warm")  # leaves an idle connection
    for i in range(3):
        outcome = await _outcome(pool, state.port, b"%d" % i)
        assert isinstance(outcome, UpstreamResponse)
        assert (outcome.status, outcome.body, outcome.content_type) == (200, b"%d" % i, "application/json")
    assert state.connections == 1  # the connection went back to the pool after each answer
    assert b"x-a: 1\r\n" in state.requests[-1]
    await state.close()


async def test_try_request_reports_a_dying_server_and_a_timeout_as_the_coroutine_path_does() -> None:
    pool = UpstreamPool(max_connections=1, read_timeout_s=0.5)

    def flaky(body: bytes) -> bytes | None:
        return None if body == b"die" else ok(b"fine")

    state = await start(flaky)
    try:
        await pool.request("POST", "127.0.0.1", state.port, "/", b"warm")
        died = await _outcome(pool, state.port, b"die")
        assert isinstance(died, UpstreamError) and "mid-exchange" in str(died)
        # the broken connection left the pool: nothing idle to take, and the coroutine path reconnects
        assert not pool.try_request("POST", "127.0.0.1", state.port, "/", b"", (), lambda _: None)
        assert (await pool.request("POST", "127.0.0.1", state.port, "/", b"again")).body == b"fine"
    finally:
        await state.close()

    async def stall_on_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if await reader.readexactly(length) == b"stall":
                    await asyncio.sleep(1)
                writer.write(ok(b"done"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client gave up on the stalled exchange, or the test server is closing
        finally:
            writer.close()

    server = await asyncio.start_server(stall_on_request, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await pool.request("POST", "127.0.0.1", port, "/", b"warm")
        timed_out = await _outcome(pool, port, b"stall")
        assert isinstance(timed_out, UpstreamTimeout) and "no response within 0.5 s" in str(timed_out)
        assert (await pool.request("POST", "127.0.0.1", port, "/", b"after")).body == b"done"
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()
