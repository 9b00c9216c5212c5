"""The HTTP server's own limits: a client that sends its request line and headers slowly (slowloris)
or opens a connection and sends nothing is cut off after ``header_timeout_s``; every such refusal is
reported to ``refused``."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from driftloop_graphs.http_server import HttpRequest, HttpResponse, HttpServer
from driftloop_graphs.runtime import bind


async def ok(request: HttpRequest) -> HttpResponse:
    return HttpResponse(200, b"{}")


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int, list[tuple[int, str]]]]:
    refused: list[tuple[int, str]] = []
    srv = HttpServer(
        ok, header_timeout_s=0.3, keepalive_timeout_s=30, refused=lambda s, c: refused.append((s, c))
    )
    sock = bind("127.0.0.1", 0)
    await srv.start(sock)
    try:
        yield srv, sock.getsockname()[1], refused
    finally:
        await srv.stop(timeout_s=5)


def slow_client(port: int, head: bytes) -> tuple[bytes, float]:
    """Send ``head`` a byte every 20 ms until the server answers; its answer and the seconds taken."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        started = time.monotonic()
        for byte in head:
            readable, _, _ = select.select([sock], [], [], 0.02)  # busy: an idle timeout never fires
            if readable:
                break
            sock.sendall(bytes([byte]))
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks), time.monotonic() - started


async def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(
    server: tuple[HttpServer, int, list[tuple[int, str]]],
) -> None:
    _, port, refused = server
    head = b"GET /x HTTP/1.1\r\nhost: a\r\nx-slow: " + b"v" * 100
    answer, seconds = await asyncio.to_thread(slow_client, port, head)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "header_timeout"
    assert seconds < 2
    assert refused == [(408, "header_timeout")]


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: tuple[HttpServer, int, list[tuple[int, str]]],
) -> None:
    _, port, refused = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # well before the 30 s keep-alive timeout
    assert refused == [(408, "header_timeout")]
    writer.close()


async def test_a_prompt_keep_alive_client_is_not_cut_off(
    server: tuple[HttpServer, int, list[tuple[int, str]]],
) -> None:
    _, port, refused = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(3):
        writer.write(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n{}"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(0.25)  # idle between requests: the keep-alive timeout applies, not this one
    assert refused == []
    writer.close()
