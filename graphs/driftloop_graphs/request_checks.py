"""What the ingress refuses before a request reaches a graph node, and the limits it applies.

MLServer answers some inputs with a 500 and its stack trace (a body that is not UTF-8 JSON, a V2
``id`` it cannot copy into a response header) or grows by gigabytes on a huge one. The ingress
refuses such a request with a 4xx that says what was wrong, in one place both of its paths go
through (``Ingress._prepare``). The checks read the body once with orjson and touch each input
tensor's header fields, not its data, except to count the elements of nested ``data``.

Limits come from :class:`IngressLimits`: environment variables ``DRIFTLOOP_INGRESS_<FIELD>`` (e.g.
``DRIFTLOOP_INGRESS_MAX_ROWS=50000``) or ``RuntimeSettings.limits``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.eventlog.validation import DEFAULT_MAX_MESSAGE_BYTES

V2_DATATYPES = frozenset(
    [
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    ]
)
_PUID = re.compile(r"[A-Za-z0-9._:-]+")
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")  # what MLServer can copy into a response header
LOG_HEADROOM_BYTES = 16 * 1024  # the log event's headers and framing around the body


class IngressLimits(BaseSettings):
    """The ingress's limits; each refusal names the limit and the variable that changes it."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_INGRESS_", extra="forbid")

    max_rows: int = Field(default=10_000, gt=0)  # rows (first dimension) of any input tensor
    max_puid_chars: int = Field(default=128, gt=0)
    max_id_chars: int = Field(default=256, gt=0)  # the V2 body's ``id``
    max_header_count: int = Field(default=100, gt=0)
    max_header_bytes: int = Field(default=16 * 1024, gt=0)  # request line and headers
    header_timeout_s: float = Field(default=10.0, gt=0)  # to send a request's line and headers
    # a logged request's body is one event in the log: over the log's record limit it could never be
    # written (the event logs' default limit, less room for the event's headers)
    max_logged_body_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES - LOG_HEADROOM_BYTES, gt=0)


class Refusal(Exception):
    """A request the ingress will not forward: ``status``, a stable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _env(field: str) -> str:
    return f"DRIFTLOOP_INGRESS_{field.upper()}"


def check_puid(puid: str, limits: IngressLimits) -> None:
    if len(puid) > limits.max_puid_chars:
        raise Refusal(
            400,
            "bad_puid",
            f"Seldon-Puid is {len(puid)} characters; the limit is {limits.max_puid_chars} "
            f"(set {_env('max_puid_chars')} to change it)",
        )
    if _PUID.fullmatch(puid) is None:
        raise Refusal(400, "bad_puid", "Seldon-Puid may hold only letters, digits and . _ : -")


def check_headers(headers: dict[str, str]) -> None:
    """The content type and coding of an inference request."""
    content_type = headers.get("content-type")
    if content_type is not None:
        media = content_type.partition(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise Refusal(
                415,
                "unsupported_media_type",
                "a V2 inference request is JSON: send Content-Type: application/json",
            )
    coding = headers.get("content-encoding")
    if coding is not None and coding.strip().lower() not in ("", "identity"):
        raise Refusal(
            415,
            "unsupported_encoding",
            "the ingress does not decode Content-Encoding: send the request body uncompressed",
        )


def check_body(body: bytes, limits: IngressLimits, logged: bool) -> None:
    """A V2 inference request the graph's MLServer can take, or :class:`Refusal` saying why not."""
    if not body:
        raise Refusal(400, "empty_body", "empty request body: send a V2 inference request with 'inputs'")
    if logged and len(body) > limits.max_logged_body_bytes:
        raise Refusal(
            413,
            "too_large_to_log",
            f"the request body is {len(body)} bytes; the predictor logs requests and a logged body may "
            f"be at most {limits.max_logged_body_bytes} bytes (the event log's record limit; set "
            f"{_env('max_logged_body_bytes')} with the log's max_message_bytes): send fewer rows",
        )
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refusal(400, "invalid_json", f"the request body is not UTF-8 JSON: {exc}") from None
    if not isinstance(request, dict):
        raise Refusal(422, "invalid_request", "a V2 inference request is a JSON object with 'inputs'")
    _check_id(request.get("id"), limits)
    for key in ("parameters",):
        if request.get(key) is not None and not isinstance(request[key], dict):
            raise Refusal(422, "invalid_request", f"'{key}' must be a JSON object")
    outputs = request.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    ):
        raise Refusal(422, "invalid_request", "'outputs' must be a list of objects with a string 'name'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise Refusal(422, "invalid_request", "'inputs' must be a non-empty list of V2 input tensors")
    rows: dict[str, int] = {}
    for index, tensor in enumerate(inputs):
        name, count = _check_tensor(index, tensor, limits)
        rows[name] = count
    features, assets = rows.get("features"), rows.get("asset_id")
    if features is not None and assets is not None and features != assets:
        raise Refusal(
            422,
            "invalid_request",
            f"'asset_id' has {assets} row(s) and 'features' {features}: give one asset id per row",
        )


def _check_id(value: object, limits: IngressLimits) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise Refusal(422, "invalid_request", "'id' must be a string")
    if len(value) > limits.max_id_chars:
        raise Refusal(
            422,
            "invalid_request",
            f"'id' is {len(value)} characters; the limit is {limits.max_id_chars} "
            f"(set {_env('max_id_chars')} to change it)",
        )
    if _HEADER_SAFE.fullmatch(value) is None:
        raise Refusal(
            422,
            "invalid_request",
            "'id' may hold only printable ASCII characters (MLServer returns it in a response header)",
        )


def _check_tensor(index: int, tensor: Any, limits: IngressLimits) -> tuple[str, int]:
    """A tensor's name and row count, after checking its header fields and its element count."""
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise Refusal(422, "invalid_request", f"{where} must be an object with name, shape, datatype, data")
    name = tensor.get("name")
    if not isinstance(name, str) or not name:
        raise Refusal(422, "invalid_request", f"{where}.name must be a non-empty string")
    where = f"input {name!r}"
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise Refusal(422, "invalid_request", f"{where}: 'shape' must be a list of non-negative integers")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
        raise Refusal(
            422, "invalid_request", f"{where}: 'datatype' must be one of {', '.join(sorted(V2_DATATYPES))}"
        )
    if tensor.get("parameters") is not None and not isinstance(tensor["parameters"], dict):
        raise Refusal(422, "invalid_request", f"{where}: 'parameters' must be a JSON object")
    rows = shape[0] if shape else 1
    if rows > limits.max_rows:
        raise Refusal(
            422,
            "too_many_rows",
            f"{where} has {rows} rows; the ingress takes at most {limits.max_rows} rows per request "
            f"(set {_env('max_rows')} to change it, or split the request)",
        )
    data = tensor.get("data")
    if not isinstance(data, list):
        raise Refusal(422, "invalid_request", f"{where}: 'data' must be a list")
    expected = math.prod(shape)
    found = _count(data, expected)
    if found != expected:
        raise Refusal(
            422,
            "invalid_request",
            f"{where}: 'shape' {shape} holds {expected} element(s) but 'data' has {found}",
        )
    return name, rows


def _count(data: list[Any], expected: int) -> int:
    """The scalars in ``data`` (nested lists flattened); stops counting past ``expected``."""
    if list not in map(type, data):  # flat, the usual case (the scan runs in C)
        return len(data)
    total = 0
    stack: list[list[Any]] = [data]
    while stack and total <= expected:
        for item in stack.pop():
            if type(item) is list:
                stack.append(item)
            else:
                total += 1
    return total
