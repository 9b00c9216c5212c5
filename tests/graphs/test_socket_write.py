"""``write_now``: bytes reach the peer in order, on asyncio's loop and uvloop, when the socket takes
everything, part of it (the rest buffered by the transport), or nothing because the transport already
holds unsent bytes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
import uvloop
from driftloop_graphs import socket_write
from driftloop_graphs.socket_write import socket_fd, write_now

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)


async def _send_and_read(chunks: list[bytes], first: bytes = b"") -> tuple[bytes, list[int]]:
    """Write ``first`` with ``transport.write``, then ``chunks`` with ``write_now``, in one callback, on
    one connection; what the peer read, and the transport's buffered size after each write."""
    loop = asyncio.get_running_loop()
    sinks: list[Sink] = []

    def make_sink() -> Sink:
        sinks.append(Sink())
        return sinks[-1]

    server = await loop.create_server(make_sink, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    fd = socket_fd(transport)
    assert fd >= 0
    buffered = []
    if first:
        transport.write(first)  # uvloop holds it until the loop iteration ends
    for chunk in chunks:
        write_now(transport, fd, chunk)  # type: ignore[arg-type]
        buffered.append(transport.get_write_buffer_size())  # type: ignore[attr-defined]
    transport.close()
    while not sinks:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(sinks[0].closed, 30)
    server.close()
    await server.wait_closed()
    return bytes(sinks[0].data), buffered


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_small_writes_go_out_at_once_in_order(loop_name: str) -> None:
    chunks = [b"request %d;" % i for i in range(200)]
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        received, buffered = runner.run(_send_and_read(chunks))
    assert received == b"".join(chunks)
    assert buffered == [0] * len(chunks)  # nothing left to the transport


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_what_the_socket_does_not_take_is_buffered_and_later_writes_queue_behind_it(loop_name: str) -> None:
    big = bytes(range(256)) * 40_000  # ~10 MB: more than a socket buffer takes at once
    chunks = [big, b"after the big one", big[:1000], b"last"]
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        received, buffered = runner.run(_send_and_read(chunks))
    assert received == b"".join(chunks)
    assert buffered[0] > 0  # the socket took part; the transport holds the rest


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_bytes_written_earlier_in_the_same_callback_go_first(loop_name: str) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        received, _ = runner.run(_send_and_read([b"second;", b"third;"], first=b"first;"))
    assert received == b"first;second;third;"


@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_a_closing_transport_is_left_to_itself(loop_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []
    real_write = os.write

    def spy(fd: int, data: bytes) -> int:
        written.append(fd)
        return real_write(fd, data)

    monkeypatch.setattr(socket_write.os, "write", spy)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        fd = socket_fd(transport)
        write_now(transport, fd, b"open")  # type: ignore[arg-type]
        transport.close()
        write_now(transport, fd, b"too late")  # type: ignore[arg-type]
        server.close()
        await server.wait_closed()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(scenario())
    assert len(written) == 1  # the write while open went to the socket; none after close()
