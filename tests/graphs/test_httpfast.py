"""The C fast lane for whole, plain HTTP/1.1 messages (``driftloop_graphs._httpfast``), held to
httptools (llhttp): whatever it accepts, llhttp accepts and reads the same way; anything else it
leaves alone (None). Random messages from a grammar with the odd cases mixed in, and random
corruptions of plain messages."""

from __future__ import annotations

import random
import tracemalloc

import httptools
import pytest
from driftloop_graphs import http_server, upstream
from driftloop_graphs._httpfast import new_puid, parse_request, parse_response

MAX_BODY = 1 << 20


class _Reader:
    """What httptools reports of the messages it is fed (keep-alive read in ``on_message_complete``, as
    the ingress does: llhttp resets it for the next message)."""

    def __init__(self) -> None:
        self.body = b""
        self.complete = 0
        self.parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None
        self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.completed(self.parser)

    def completed(self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> None:
        pass


class RequestReader(_Reader):
    """The first request, as the ingress's server takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.url = b""
        self.headers: dict[str, str] = {}
        self.method = ""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def completed(self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> None:
        assert isinstance(parser, httptools.HttpRequestParser)
        self.method = parser.get_method().decode("latin-1")


class ResponseReader(_Reader):
    """The first response, as the ingress's node client takes it."""

    def __init__(self) -> None:
        super().__init__()
        self.content_type: str | None = None
        self.status = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value.decode("latin-1")

    def completed(self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser) -> None:
        assert isinstance(parser, httptools.HttpResponseParser)
        self.status = parser.get_status_code()


def _llhttp_read(data: bytes, response: bool) -> RequestReader | ResponseReader | None:
    """httptools fed exactly ``data``: its reader, or None if it refused the bytes."""
    reader: RequestReader | ResponseReader = ResponseReader() if response else RequestReader()
    parser = httptools.HttpResponseParser(reader) if response else httptools.HttpRequestParser(reader)
    reader.parser = parser
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    return reader


def llhttp_request(data: bytes) -> tuple[str, str, dict[str, str], bytes, bool] | None:
    """The one request llhttp reads from exactly ``data``; None if it fails or reads other than one."""
    reader = _llhttp_read(data, response=False)
    if not isinstance(reader, RequestReader) or reader.complete != 1:
        return None
    path = reader.url.partition(b"?")[0].partition(b"#")[0].decode("latin-1")
    return reader.method, path, reader.headers, reader.body, reader.keep_alive


def llhttp_response(data: bytes) -> tuple[int, str | None, bytes, bool] | None:
    reader = _llhttp_read(data, response=True)
    if not isinstance(reader, ResponseReader) or reader.complete != 1:
        return None
    return reader.status, reader.content_type, reader.body, reader.keep_alive


def llhttp_completes(data: bytes, response: bool) -> bool:
    reader = _llhttp_read(data, response)
    return reader is not None and reader.complete > 0


METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "FOO", "post", "CONNECT", "POSTX"]
TARGET_CHARS = "abcXYZ019-._~!$&'()*+,;=:@/?%#\"<>\\^`{|} \t\x7f\x80é"
NAME_CHARS = "abcXYZ-_019!#$%&'*+.^`|~ :\"(),/;<=>?@[\\]{}\x7f"
VALUE_CHARS = 'abc XYZ019-_/;=,.:()\t"\x7f\x80\x00é'


def _pick(rng: random.Random, common: str, odd: str, odd_share: float, size: int) -> str:
    return "".join(rng.choice(odd if rng.random() < odd_share else common) for _ in range(size))


def random_head_lines(rng: random.Random, body: bytes) -> list[str]:
    lines: list[str] = []
    for _ in range(rng.randrange(0, 6)):
        name = _pick(rng, "abcdefgh-XYZ", NAME_CHARS, 0.05, rng.randrange(1, 12))
        value = _pick(rng, "abcdefgh xyz019/;=", VALUE_CHARS, 0.05, rng.randrange(0, 20))
        sep = rng.choice([": ", ":", ":  ", " : ", ":\t"])
        lines.append(f"{name}{sep}{value}")
    specials = [
        f"Content-Length: {len(body)}",
        f"content-length: {len(body)}",
        f"Content-Length: {len(body) + rng.choice([-1, 1, 5])}",
        f"Content-Length: 0{len(body)}",
        f"Content-Length: +{len(body)}",
        "Content-Length: 1e3",
        "Transfer-Encoding: chunked",
        "Connection: close",
        "Connection: keep-alive",
        "connection: Keep-Alive",
        "Connection: upgrade",
        "Connection: close, keep-alive",
        "Upgrade: websocket",
        "Expect: 100-continue",
        "Content-Type: application/json",
        "content-type: text/plain; charset=utf-8",
        "Host: 127.0.0.1:8080",
        "Seldon-Puid: 1f0c-42",
        " folded",
        "X-Empty:",
        "X-Pad: value ",
    ]
    for _ in range(rng.randrange(0, 4)):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(specials))
    if rng.random() < 0.7:
        lines.insert(rng.randrange(len(lines) + 1), f"Content-Length: {len(body)}")
    return lines


def random_request(rng: random.Random) -> bytes:
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 0, 2, 17, 300])))
    method = rng.choice(METHODS) if rng.random() < 0.3 else "POST"
    target = "/" + _pick(rng, "abc/xyz019", TARGET_CHARS, 0.03, rng.randrange(0, 30))
    if rng.random() < 0.05:
        target = rng.choice(["*", "http://h/p", "", "p"])
    version = rng.choice(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0", "HTTP/1.2", "http/1.1", "HTTP/1.1 "])
    newline = "\r\n" if rng.random() < 0.95 else rng.choice(["\n", "\r"])
    head = newline.join([f"{method} {target} {version}", *random_head_lines(rng, body)]) + newline + newline
    return head.encode("utf-8") + body


def random_response(rng: random.Random) -> bytes:
    body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 2, 17, 300])))
    status = rng.choice([200, 200, 200, 201, 400, 404, 422, 500, 503, 100, 204, 304, 99, 600])
    reason = rng.choice(["OK", "", "Not Found", "Unprocessable Entity", "Bad\x01", "Ok\x80"])
    version = rng.choice(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0"])
    line = f"{version} {status} {reason}" if rng.random() < 0.95 else f"{version} {status}"
    head = "\r\n".join([line, *random_head_lines(rng, body)]) + "\r\n\r\n"
    return head.encode("utf-8") + body


def corrupted(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        kind = rng.randrange(3)
        at = rng.randrange(len(out))
        if kind == 0:
            out[at] = rng.randrange(256)
        elif kind == 1:
            del out[at]
        else:
            out.insert(at, rng.choice(b" \t\r\n:\x00\x7fA"))
    return bytes(out)


def check_request(data: bytes) -> bool:
    """C and llhttp agree on ``data``; True if C took the first message."""
    parsed = parse_request(data, 0, MAX_BODY)
    if parsed is None:
        return False
    method, path, headers, body, keep_alive, end = parsed
    assert 0 < end <= len(data)
    message = data[:end]
    assert llhttp_request(message) == (method, path, headers, body, keep_alive), data
    assert not llhttp_completes(message[:-1], response=False), data  # the message ends exactly at end
    return True


def check_response(data: bytes) -> bool:
    parsed = parse_response(data, 0)
    if parsed is None:
        return False
    status, content_type, body, keep_alive, end = parsed
    assert 0 < end <= len(data)
    message = data[:end]
    assert llhttp_response(message) == (status, content_type, body, keep_alive), data
    assert not llhttp_completes(message[:-1], response=True), data
    return True


def test_random_requests_parse_as_llhttp_reads_them_or_are_left_to_it() -> None:
    rng = random.Random(7)
    taken = sum(check_request(random_request(rng)) for _ in range(20_000))
    assert 500 < taken < 19_000  # both sides of the line are exercised


def test_corrupted_plain_requests_parse_as_llhttp_reads_them_or_are_left_to_it() -> None:
    rng = random.Random(11)
    plain = (
        b"POST /seldon/ns/dep/v2/models/infer HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"
        b"Content-Type: application/json\r\nSeldon-Puid: abc\r\nContent-Length: 13\r\n\r\n"
        b'{"inputs":[]}'
    )
    assert check_request(plain)
    taken = sum(check_request(corrupted(rng, plain)) for _ in range(20_000))
    assert taken > 1_000


def test_random_and_corrupted_responses_parse_as_llhttp_reads_them_or_are_left_to_it() -> None:
    rng = random.Random(13)
    taken = sum(check_response(random_response(rng)) for _ in range(20_000))
    assert 500 < taken < 19_000
    plain = (
        b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 18:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 14\r\ncontent-type: application/json\r\n\r\n"
        b'{"outputs":[]}'
    )
    assert parse_response(plain, 0) == (200, "application/json", b'{"outputs":[]}', True, len(plain))
    taken = sum(check_response(corrupted(rng, plain)) for _ in range(20_000))
    assert taken > 1_000


def test_pipelined_requests_parse_one_at_a_time_from_an_offset() -> None:
    one = b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
    two = b"GET /b?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n"
    data = one + two + b"GET /c HTT"
    first = parse_request(data, 0, MAX_BODY)
    assert first == ("POST", "/a", {"content-length": "2"}, b"{}", True, len(one))
    second = parse_request(data, len(one), MAX_BODY)
    assert second == ("GET", "/b", {"connection": "close"}, b"", False, len(one) + len(two))
    assert parse_request(data, len(one) + len(two), MAX_BODY) is None  # incomplete: httptools waits


def test_incomplete_and_oversized_messages_are_left_to_httptools() -> None:
    request = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    for cut in range(len(request)):
        assert parse_request(request[:cut], 0, MAX_BODY) is None
    assert parse_request(request, 0, 4) is None  # over max_body: httptools' path answers 413
    assert parse_request(request, 0, 5) is not None
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    for cut in range(len(response)):
        assert parse_response(response[:cut], 0) is None
    assert parse_response(b"HTTP/1.1 200 OK\r\n\r\n{}", 0) is None  # a body read to the close


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="takes bytes"):
        parse_request(bytearray(b"GET / HTTP/1.1\r\n\r\n"), 0, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset 99 outside the buffer"):
        parse_request(b"GET / HTTP/1.1\r\n\r\n", 99, 10)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        parse_response(b"", 0, 1)  # type: ignore[call-arg]


def test_the_ingress_server_and_node_client_use_the_built_parser() -> None:
    assert http_server.parse_request is parse_request
    assert upstream.parse_response is parse_response


def test_arbitrary_bytes_at_any_offset_are_read_within_the_buffer() -> None:
    """Random bytes, with the start of a plain message mixed in, at random offsets and body limits:
    every call returns None or a message that ends inside the buffer (bounds, not meaning)."""
    rng = random.Random(17)
    starts = [b"POST / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\n", b"content-length: 9\r\n", b"\r\n\r\n"]
    for _ in range(20_000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        if rng.random() < 0.5:
            data = rng.choice(starts) + data
        offset = rng.randrange(len(data) + 1)
        request = parse_request(data, offset, rng.choice([0, 5, MAX_BODY]))
        response = parse_response(data, offset)
        for parsed in (request, response):
            assert parsed is None or offset < parsed[-1] <= len(data)


def test_parsing_and_puids_do_not_leak() -> None:
    """2,000 rounds after a warm-up (taken, left-alone and refused messages, puids): the memory Python
    allocates stays flat (a missed reference per message would grow it by megabytes)."""
    request = (
        b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    def one_round() -> None:
        assert parse_request(request, 0, MAX_BODY) is not None
        assert parse_request(request.replace(b"Host", b"Upgrade"), 0, MAX_BODY) is None
        assert parse_request(request, 0, 1) is None
        assert parse_response(response, 0) is not None
        assert parse_response(response[:-1], 0) is None
        try:  # not pytest.raises: it keeps a little per use, which would read as a leak here
            parse_request(bytearray(request), 0, MAX_BODY)  # type: ignore[arg-type]
        except TypeError:
            pass
        else:
            raise AssertionError("a bytearray was parsed")
        assert len(new_puid()) == 36

    for _ in range(200):
        one_round()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(2_000):
            one_round()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 64 * 1024, f"grew {end - start} bytes over 2,000 rounds"
