"""The ingress's HTTP/1.1 server over real loopback sockets: keep-alive, pipelining, chunked bodies,
limits, errors as JSON, graceful stop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
from driftloop_graphs.http_server import HttpRequest, HttpResponse, HttpServer, Responder
from driftloop_graphs.runtime import bind


async def echo(request: HttpRequest) -> HttpResponse:
    if request.path == "/boom":
        raise RuntimeError("handler exploded")
    if request.path == "/slow":
        await asyncio.sleep(0.3)
    body = json.dumps(
        {
            "method": request.method,
            "path": request.path,
            "body": request.body.decode(),
            "x": request.headers.get("x"),
        }
    ).encode()
    return HttpResponse(200, body, "application/json", (("x-seen", "1"),))


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, int]]:
    srv = HttpServer(echo, max_body_bytes=1000, keepalive_timeout_s=0.5)
    sock = bind("127.0.0.1", 0)
    await srv.start(sock)
    try:
        yield srv, sock.getsockname()[1]
    finally:
        await srv.stop(timeout_s=5)


async def exchange(port: int, raw: bytes, until_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    if until_close:
        data = await asyncio.wait_for(reader.read(), 5)
    else:
        data = await asyncio.wait_for(_read_responses(reader, raw.count(b"HTTP/1.1\r\n")), 5)
    writer.close()
    return data


async def _read_responses(reader: asyncio.StreamReader, count: int) -> bytes:
    out = b""
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
        )
        out += head + await reader.readexactly(length)
    return out


def bodies(data: bytes) -> list[dict[str, object]]:
    parts = data.split(b"HTTP/1.1 ")[1:]
    return [json.loads(p.split(b"\r\n\r\n", 1)[1]) for p in parts]


async def test_keep_alive_and_pipelining_answer_in_order(server: tuple[HttpServer, int]) -> None:
    _, port = server
    raw = b"".join(
        f"POST /r{i} HTTP/1.1\r\nhost: x\r\nx: {i}\r\ncontent-length: 2\r\n\r\nb{i}".encode()
        for i in range(5)
    )
    data = await exchange(port, raw)
    assert data.count(b"HTTP/1.1 200 OK") == 5
    assert [b["path"] for b in bodies(data)] == [f"/r{i}" for i in range(5)]
    assert [b["x"] for b in bodies(data)] == [str(i) for i in range(5)]
    assert b"x-seen: 1" in data and b"connection: close" not in data


async def test_chunked_request_body_is_decoded(server: tuple[HttpServer, int]) -> None:
    _, port = server
    raw = b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    data = await exchange(port, raw)
    assert bodies(data)[0]["body"] == "abcde"


async def test_expect_continue_gets_an_interim_answer(server: tuple[HttpServer, int]) -> None:
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"ok")
    assert bodies(await _read_responses(reader, 1))[0]["body"] == "ok"
    writer.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n" + b"a" * 5000,
        b"POST /big HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"a" * 1024
        + b"\r\n0\r\n\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_body_over_the_limit_is_413_json_then_close(server: tuple[HttpServer, int], raw: bytes) -> None:
    _, port = server
    data = await exchange(port, raw, until_close=True)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in data
    assert "limit of 1000 bytes" in json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]


async def test_malformed_request_is_400_json(server: tuple[HttpServer, int]) -> None:
    _, port = server
    data = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n", until_close=True)
    assert data.startswith(b"HTTP/1.1 400 ")
    assert "malformed HTTP request" in json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]


async def test_handler_error_is_500_json_without_a_stack_trace(server: tuple[HttpServer, int]) -> None:
    _, port = server
    data = await exchange(port, b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ")
    answer = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert answer["code"] == "internal" and "RuntimeError" in answer["error"]
    # the exception's text may hold internals (paths, values): it goes to the log, not to the client
    assert "handler exploded" not in answer["error"] and "Traceback" not in answer["error"]


async def test_connection_close_and_http10_are_honoured(server: tuple[HttpServer, int]) -> None:
    _, port = server
    data = await exchange(port, b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", until_close=True)
    assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data
    data = await exchange(port, b"GET /a HTTP/1.0\r\n\r\n", until_close=True)
    assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data


async def test_idle_connection_is_closed_after_the_keepalive_timeout(server: tuple[HttpServer, int]) -> None:
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
    await _read_responses(reader, 1)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server after 0.5 s idle
    writer.close()


async def test_stalled_request_is_closed_after_the_keepalive_timeout(server: tuple[HttpServer, int]) -> None:
    _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_stop_answers_in_flight_requests_then_refuses_new_ones() -> None:
    srv = HttpServer(echo)
    sock = bind("127.0.0.1", 0)
    await srv.start(sock)
    port = sock.getsockname()[1]
    in_flight = asyncio.create_task(exchange(port, b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"))
    await asyncio.sleep(0.1)
    await srv.stop(timeout_s=5)
    data = await in_flight
    assert data.startswith(b"HTTP/1.1 200 ") and b"connection: close" in data
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


async def test_the_handler_sees_the_path_without_query_for_both_target_forms(
    server: tuple[HttpServer, int],
) -> None:
    _, port = server
    raw = (
        b"GET /seldon/ns/d/v2/models/infer?trace=1&x=%2F HTTP/1.1\r\nhost: x\r\n\r\n"
        b"GET /plain HTTP/1.1\r\nhost: x\r\n\r\n"
        b"GET http://127.0.0.1:8080/absolute/form?q=1 HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    data = await exchange(port, raw)
    assert [b["path"] for b in bodies(data)] == ["/seldon/ns/d/v2/models/infer", "/plain", "/absolute/form"]


@pytest.fixture
async def fast_server() -> AsyncIterator[tuple[HttpServer, int, list[str]]]:
    """A server whose fast handler takes /fast/* (answering 30 ms later from a timer, or at once for
    /fast/now), raises on /fast/boom and declines everything else (``echo`` answers those)."""
    taken: list[str] = []
    loop = asyncio.get_running_loop()

    def fast(request: HttpRequest, respond: Responder) -> bool:
        if not request.path.startswith("/fast/"):
            return False
        if request.path == "/fast/boom":
            raise RuntimeError("fast handler exploded")
        taken.append(request.path)
        answer = HttpResponse(200, json.dumps({"path": request.path, "fast": True}).encode())
        if request.path == "/fast/now":
            respond(answer)
        else:
            loop.call_later(0.03, respond, answer)
        return True

    srv = HttpServer(echo, fast=fast, keepalive_timeout_s=0.5)
    sock = bind("127.0.0.1", 0)
    await srv.start(sock)
    try:
        yield srv, sock.getsockname()[1], taken
    finally:
        await srv.stop(timeout_s=5)


async def test_the_fast_handler_answers_what_it_takes_and_pipelined_requests_wait_their_turn(
    fast_server: tuple[HttpServer, int, list[str]],
) -> None:
    _, port, taken = fast_server
    paths = ["/fast/a", "/slow", "/fast/b", "/other", "/fast/now"]
    raw = b"".join(f"GET {p} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for p in paths)
    data = await exchange(port, raw)
    assert [b["path"] for b in bodies(data)] == paths  # in order, whichever handler answered
    # The first arrived on an idle connection; the rest queued behind it and went to the coroutine
    # handler in turn (a connection offers the fast handler only what arrives with nothing in progress).
    assert taken[0] == "/fast/a" and bodies(data)[0]["fast"] is True
    one_by_one = [await exchange(port, f"GET {p} HTTP/1.1\r\nhost: x\r\n\r\n".encode()) for p in paths]
    assert [bodies(d)[0].get("fast", False) for d in one_by_one] == [True, False, True, False, True]


async def test_a_fast_handler_that_raises_is_answered_500_and_the_connection_goes_on(
    fast_server: tuple[HttpServer, int, list[str]],
) -> None:
    _, port, _ = fast_server
    raw = b"GET /fast/boom HTTP/1.1\r\nhost: x\r\n\r\nGET /fast/now HTTP/1.1\r\nhost: x\r\n\r\n"
    data = await exchange(port, raw)
    assert data.startswith(b"HTTP/1.1 500 ") and b"RuntimeError" in data and b"exploded" not in data
    assert bodies(data)[1] == {"path": "/fast/now", "fast": True}


async def test_stop_waits_for_answers_the_fast_handler_owes(
    fast_server: tuple[HttpServer, int, list[str]],
) -> None:
    srv, port, _ = fast_server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /fast/late HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.005)  # taken, answer due in 30 ms
    assert srv.in_flight == 1
    await srv.stop(timeout_s=5)
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.startswith(b"HTTP/1.1 200 OK") and b"connection: close" in data
    writer.close()
