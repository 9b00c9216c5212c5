"""Hypothesis strategies of V2 inference requests for the ingress fuzz tests: valid requests, and
requests broken in one place each (a field replaced by any JSON value, a hostile ``id``, bytes that
are not JSON, an odd content type or header). Each example carries the class of change it makes, so a
run can be summarised per class."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
SAFE_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24)
# what an HTTP client may put in a header value: visible ASCII, spaces inside, obs-text (0x80-0xff)
HEADER_BYTES = (
    st.lists(st.sampled_from([0x20, 0x09, *range(0x21, 0x7F), *range(0x80, 0x100)]), max_size=40)
    .map(bytes)
    .map(lambda b: b.strip(b" \t"))
)


def dumps(value: object) -> bytes:
    """JSON as a client would send it (integers of any size, non-ASCII text as UTF-8)."""
    return json.dumps(value, ensure_ascii=False).encode()


@dataclass
class Example:
    kind: str  # the class of change; "valid" must be answered 200
    body: bytes
    headers: dict[str, bytes] = field(default_factory=lambda: {"content-type": b"application/json"})


@st.composite
def tensors(draw: st.DrawFn, rows: int | None = None) -> dict[str, Any]:
    datatype = draw(st.sampled_from(["FP64", "FP32", "INT64", "INT32", "BOOL", "BYTES"]))
    n = draw(st.integers(0, 4)) if rows is None else rows
    width = draw(st.integers(1, 3))
    shape = draw(st.sampled_from([[n, width], [n * width]]))
    count = n * width
    element: st.SearchStrategy[Any] = {
        "FP64": st.floats(-1e6, 1e6),
        "FP32": st.floats(-1e6, 1e6, width=32),
        "INT64": st.integers(-(2**40), 2**40),
        "INT32": st.integers(-(2**20), 2**20),
        "BOOL": st.booleans(),
        "BYTES": SAFE_TEXT,
    }[datatype]
    data = draw(st.lists(element, min_size=count, max_size=count))
    return {"name": draw(SAFE_TEXT), "shape": shape, "datatype": datatype, "data": data}


@st.composite
def valid_requests(draw: st.DrawFn) -> dict[str, Any]:
    request: dict[str, Any] = {
        "inputs": draw(st.lists(tensors(), min_size=1, max_size=3, unique_by=lambda t: t["name"]))
    }
    if draw(st.booleans()):
        request["id"] = draw(SAFE_TEXT)
    if draw(st.booleans()):
        request["parameters"] = {"tag": draw(SAFE_TEXT)}
    return request


@st.composite
def examples(draw: st.DrawFn) -> Example:
    kind = draw(
        st.sampled_from(
            ["valid", "field", "tensor_field", "id", "bytes", "json", "content_type", "headers", "rows"]
        )
    )
    request = draw(valid_requests())
    if kind == "valid":
        return Example(kind, dumps(request))
    if kind == "field":
        key = draw(st.sampled_from(["inputs", "outputs", "id", "parameters"]))
        request[key] = draw(JSON_VALUES)
        return Example(kind, dumps(request))
    if kind == "tensor_field":
        key = draw(st.sampled_from(["name", "shape", "datatype", "data", "parameters"]))
        request["inputs"][0][key] = draw(JSON_VALUES | st.lists(JSON_VALUES, max_size=3))
        return Example(kind, dumps(request))
    if kind == "id":
        request["id"] = draw(st.text(max_size=30))
        return Example(kind, dumps(request))
    if kind == "bytes":
        content_type = draw(st.sampled_from([b"application/json", b"text/plain"]))
        return Example(kind, draw(st.binary(min_size=1, max_size=64)), {"content-type": content_type})
    if kind == "json":
        return Example(kind, dumps(draw(JSON_VALUES)))
    if kind == "content_type":
        content_type = draw(
            HEADER_BYTES | st.sampled_from([b"text/plain", b"application/x-www-form-urlencoded"])
        )
        return Example(kind, dumps(request), {"content-type": content_type})
    if kind == "headers":
        name = draw(st.sampled_from(["seldon-puid", "content-encoding", "seldon-skip-logging"]))
        headers = {"content-type": b"application/json", name: draw(HEADER_BYTES)}
        return Example(kind, dumps(request), headers)
    # rows: a first dimension far from the data, or very large
    tensor = request["inputs"][0]
    tensor["shape"] = [draw(st.integers(0, 2**40)), *tensor["shape"][1:]]
    return Example(kind, dumps(request))
