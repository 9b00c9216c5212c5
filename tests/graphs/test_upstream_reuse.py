"""When the node pool reuses a connection and when it retries: never after a 5xx (uvicorn closes the
connection after an application error), and once, on a new connection, when a pooled connection was
closed by the server before any byte of an answer came back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from driftloop_graphs.upstream import UpstreamError, UpstreamPool, UpstreamResponse


@dataclass
class OneShotServer:
    """Answers ``status`` to the first request of each connection; closes the connection, without
    answering, when a second request arrives on it (a server that closed it while idle)."""

    status: int = 200
    connections: int = 0
    answered: int = 0
    received: int = 0
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            for first in (True, False):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.received += 1
                if not first:
                    break
                self.answered += 1
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 2\r\n\r\n{}" % self.status)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def one_shot() -> AsyncIterator[OneShotServer]:
    state = OneShotServer()
    state.server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state
    state.server.close()
    for writer in state.writers:
        writer.close()
    await state.server.wait_closed()


def port_of(state: OneShotServer) -> int:
    assert state.server is not None
    return int(state.server.sockets[0].getsockname()[1])


async def test_a_pooled_connection_closed_before_answering_is_retried_once_on_a_new_one(
    one_shot: OneShotServer,
) -> None:
    pool = UpstreamPool(keepalive_expiry_s=60)
    port = port_of(one_shot)
    try:
        assert (await pool.request("POST", "127.0.0.1", port, "/a", b"{}")).status == 200
        assert (await pool.request("POST", "127.0.0.1", port, "/a", b"{}")).status == 200  # retried
        outcome: asyncio.Future[UpstreamResponse | UpstreamError] = asyncio.get_running_loop().create_future()
        assert pool.try_request("POST", "127.0.0.1", port, "/a", b"{}", (), outcome.set_result)
        result = await asyncio.wait_for(outcome, 5)
        assert isinstance(result, UpstreamResponse) and result.status == 200
        assert one_shot.connections == 3 and one_shot.answered == 3 and one_shot.received == 5
    finally:
        await pool.aclose()


async def test_a_connection_that_answered_5xx_is_not_reused(one_shot: OneShotServer) -> None:
    one_shot.status = 500
    pool = UpstreamPool(keepalive_expiry_s=60)
    port = port_of(one_shot)
    try:
        for _ in range(3):
            assert (await pool.request("POST", "127.0.0.1", port, "/a", b"{}")).status == 500
        assert one_shot.connections == 3 and one_shot.received == 3  # never sent on a used one
    finally:
        await pool.aclose()
