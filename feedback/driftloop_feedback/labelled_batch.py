"""The labelled topic's batch record: many examples in one record, columnar, and the one decoder.

``driftloop.labelled`` holds two record formats; every reader goes through this module:

- **JSON** (written before the batch record existed): one ``LabelledExample.encode()`` object per
  record, key = request id. Still read everywhere, so existing topics keep working.
- **batch record, version 1** (what the joiner writes): the examples one joiner shard flushed for one
  partition, as columns. Layout::

      b"DLLB" | version (1 byte) | header length (uint32, little-endian) | header (JSON) | body

  The header is a JSON object: ``n`` (rows), ``arrays`` (name -> [dtype, shape, start, stop], byte
  ranges of the body; dtypes ``<f8``/``<i8`` only), and the columns kept as JSON lists. Always as
  arrays: ``row`` (int64), ``event_time``, ``truth_time`` (float64), and ``features`` (float64
  ``[n, F]``) unless the rows have different counts (then a JSON list of lists). ``truth`` and
  ``prediction`` are float64 arrays when every value is a float (regression), else JSON lists of class
  labels. JSON lists: ``example_id``, ``request_id``, ``endpoint``, ``model_version``, ``joined_by``,
  ``asset_id`` (null allowed), the last four as a one-element list when every row has the same value;
  optional ``probabilities`` and ``classes`` (one entry per row, null where unset). A JSON value
  never starts with ``D``, so the first bytes tell the formats apart.

An example's position on the topic is (partition, offset, index within the record); a record holds
the examples of one partition only. Encoders cap a record at ``MAX_ROWS`` rows and ``MAX_BYTES``
bytes (well under Kafka's 1 MB default ``max.message.bytes``); a single example larger than the byte
cap goes alone in its record (the producer's size check then decides, as for a JSON record).

Readers that want objects call ``decode_labelled`` (a list of ``LabelledExample``); the trainer reads
``decode_columns`` (arrays, no object per example). Anything else raises ``UndecodableRecord`` saying
what is wrong (truncated, unknown version, a column of the wrong length or type): the reader counts
the whole record as undecodable.

>>> e = LabelledExample("r1:0", "r1", 0, (1.0, 2.0), 3.0, 3.5, "main", "3", 10.0, 11.0, "request")
>>> (value,) = encode_examples([e, e])
>>> value[:4], decode_labelled(value) == [e, e], decode_labelled(e.encode()) == [e]
(b'DLLB', True, True)
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import orjson

from driftloop_feedback.records import Label, LabelledExample, UndecodableRecord

MAGIC = b"DLLB"
VERSION = 1
MAX_ROWS = 2048
MAX_BYTES = 512 * 1024
_PREFIX = struct.Struct("<4sBI")  # magic, version, header length
_DTYPES = {"<f8": np.float64, "<i8": np.int64}

# the fields of ``LabelledExample`` in order: what an example tuple holds (the last two optional)
FIELDS = (
    "example_id",
    "request_id",
    "row",
    "features",
    "prediction",
    "truth",
    "endpoint",
    "model_version",
    "event_time",
    "truth_time",
    "joined_by",
    "asset_id",
    "probabilities",
    "classes",
)
_STRINGS = ("example_id", "request_id", "endpoint", "model_version", "joined_by")
_FLOATS = frozenset({float})
_NUMBER_LABELS = frozenset({float, int})
_LABEL_TYPES = frozenset({float, int, str})
_fields_of = attrgetter(*FIELDS)


def is_batch(value: bytes) -> bool:
    """Whether a labelled record is a batch record (else it is read as one JSON example)."""
    return value[:4] == MAGIC


@dataclass
class LabelledColumns:
    """The examples of one record as columns (``decode_columns``)."""

    example_id: list[str]
    request_id: list[str]
    row: np.ndarray  # int64
    features: np.ndarray | list[Any]  # float [n, F]; a list of rows when their counts differ
    prediction: np.ndarray | list[Label]  # float array (regression) or labels
    truth: np.ndarray | list[Label]
    endpoint: list[str]
    model_version: list[str]
    event_time: np.ndarray  # float
    truth_time: np.ndarray  # float
    joined_by: list[str]
    asset_id: list[str | None]
    probabilities: list[tuple[float, ...] | None] | None = None
    classes: list[tuple[Label, ...] | None] | None = None

    def __len__(self) -> int:
        return len(self.example_id)

    def examples(self) -> list[LabelledExample]:
        n = len(self)
        features = (
            list(map(tuple, self.features.tolist()))
            if isinstance(self.features, np.ndarray)
            else [tuple(f) for f in self.features]
        )
        none: list[None] = [None] * n
        columns = (
            self.example_id,
            self.request_id,
            self.row.tolist(),
            features,
            _as_list(self.prediction),
            _as_list(self.truth),
            self.endpoint,
            self.model_version,
            self.event_time.tolist(),
            self.truth_time.tolist(),
            self.joined_by,
            self.asset_id,
            none if self.probabilities is None else self.probabilities,
            none if self.classes is None else self.classes,
        )
        return [LabelledExample(*fields) for fields in zip(*columns, strict=True)]


def _as_list(values: np.ndarray | list[Label]) -> list[Label]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


# -- encoding ---------------------------------------------------------------------------------------------
def encode_examples(
    examples: Sequence[LabelledExample], *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES
) -> list[bytes]:
    """``encode_tuples`` of ``LabelledExample`` objects."""
    return encode_tuples([_fields_of(e) for e in examples], max_rows=max_rows, max_bytes=max_bytes)


def encode_tuples(
    examples: Sequence[Sequence[Any]], *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES
) -> list[bytes]:
    """Batch records holding ``examples`` in order (each a tuple of ``FIELDS``, the last two optional),
    at most ``max_rows`` rows and ``max_bytes`` bytes each (a lone example over the byte cap excepted)."""
    out: list[bytes] = []
    for start in range(0, len(examples), max_rows):
        _encode_capped(examples[start : start + max_rows], max_bytes, out)
    return out


def _encode_capped(examples: Sequence[Sequence[Any]], max_bytes: int, out: list[bytes]) -> None:
    value = _encode(examples)
    if len(value) <= max_bytes or len(examples) == 1:
        out.append(value)
        return
    # too big: in parts of the size that fits (estimated from this one), halving until they do
    parts = max(2, math.ceil(len(value) / max_bytes))
    step = math.ceil(len(examples) / parts)
    for start in range(0, len(examples), step):
        _encode_capped(examples[start : start + step], max_bytes, out)


def _encode(examples: Sequence[Sequence[Any]]) -> bytes:
    if len(set(map(len, examples))) > 1:  # some with the optional fields, some without: all with
        examples = [(*e, None, None)[: len(FIELDS)] for e in examples]
    columns = list(zip(*examples, strict=True))
    n = len(examples)
    header: dict[str, Any] = {"n": n}
    arrays: dict[str, list[Any]] = {}
    body: list[bytes] = []
    size = 0

    def put(name: str, array: np.ndarray) -> None:
        nonlocal size
        data = array.tobytes()
        arrays[name] = [array.dtype.str, list(array.shape), size, size + len(data)]
        body.append(data)
        size += len(data)

    for i, name in enumerate(_STRINGS[:2]):
        header[name] = list(columns[i])
    put("row", np.asarray(columns[2], dtype="<i8"))
    features = _feature_matrix(columns[3])
    if features is None:
        header["features"] = [f.tolist() if isinstance(f, np.ndarray) else list(f) for f in columns[3]]
    else:
        put("features", features)
    for i, name in ((4, "prediction"), (5, "truth")):
        values = columns[i]
        if set(map(type, values)) <= _FLOATS:
            put(name, np.asarray(values, dtype="<f8"))
        else:
            header[name] = list(values)
    header["endpoint"], header["model_version"] = _shared(columns[6]), _shared(columns[7])
    put("event_time", np.asarray(columns[8], dtype="<f8"))
    put("truth_time", np.asarray(columns[9], dtype="<f8"))
    header["joined_by"], header["asset_id"] = _shared(columns[10]), _shared(columns[11])
    for i, name in ((12, "probabilities"), (13, "classes")):
        if len(columns) > i and any(v is not None for v in columns[i]):
            header[name] = [None if v is None else list(v) for v in columns[i]]
    header["arrays"] = arrays
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join((_PREFIX.pack(MAGIC, VERSION, len(head)), head, *body))


def _shared(values: Sequence[Any]) -> list[Any]:
    """A column of strings as a list, or as its one value when every row has it (``[v]``)."""
    return [values[0]] if len(values) > 1 and values.count(values[0]) == len(values) else list(values)


def _feature_matrix(rows: Sequence[Any]) -> np.ndarray | None:
    """The rows as one float64 matrix, or None when their counts differ (or one is not numbers)."""
    try:
        matrix = np.asarray(rows, dtype="<f8")
    except (TypeError, ValueError):
        return None
    if matrix.ndim != 2 or matrix.shape[0] != len(rows):
        return None
    return matrix


# -- decoding ---------------------------------------------------------------------------------------------
def decode_labelled(value: bytes) -> list[LabelledExample]:
    """The examples of one labelled record, either format (``UndecodableRecord`` otherwise)."""
    if not is_batch(value):
        return [LabelledExample.decode(value)]
    return decode_columns(value).examples()


def decode_columns(value: bytes) -> LabelledColumns:
    """The columns of a batch record (``UndecodableRecord`` saying what is wrong otherwise)."""
    try:
        return _columns(value)
    except UndecodableRecord:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, struct.error) as exc:
        raise UndecodableRecord(f"corrupt labelled batch record: {exc!r}; value={value[:120]!r}") from exc


def _bad(what: str, value: bytes) -> UndecodableRecord:
    return UndecodableRecord(f"labelled batch record: {what}; value={value[:120]!r}")


def _columns(value: bytes) -> LabelledColumns:
    if len(value) < _PREFIX.size:
        raise _bad(f"truncated: {len(value)} bytes, shorter than its {_PREFIX.size}-byte prefix", value)
    magic, version, head_size = _PREFIX.unpack_from(value)
    if magic != MAGIC:
        raise _bad("not a batch record (no DLLB prefix)", value)
    if version != VERSION:
        raise _bad(f"version {version}, this reader knows version {VERSION} (upgrade the reader)", value)
    body_at = _PREFIX.size + head_size
    if body_at > len(value):
        raise _bad(f"truncated: header of {head_size} bytes, {len(value) - _PREFIX.size} present", value)
    try:
        header = orjson.loads(value[_PREFIX.size : body_at])
    except orjson.JSONDecodeError as exc:
        raise _bad(f"header is not JSON ({exc})", value) from exc
    if type(header) is not dict or type(header.get("n")) is not int or header["n"] < 0:
        raise _bad("header is not an object with a row count n", value)
    n: int = header["n"]
    body = memoryview(value)[body_at:]
    arrays = header.get("arrays")
    if type(arrays) is not dict:
        raise _bad("header has no arrays", value)

    def array(name: str) -> np.ndarray | None:
        spec = arrays.get(name)
        if spec is None:
            return None
        dtype, shape, start, stop = spec
        if dtype not in _DTYPES or type(shape) is not list or not shape or shape[0] != n:
            raise _bad(f"array {name}: dtype {dtype!r} shape {shape!r} for {n} rows", value)
        if len(shape) != (2 if name == "features" else 1):
            raise _bad(f"array {name}: shape {shape!r}", value)
        want = math.prod(shape) * 8
        if not (0 <= start <= stop <= len(body)) or stop - start != want:
            raise _bad(
                f"truncated or corrupt: array {name} needs body bytes {start}..{stop} ({want} for shape "
                f"{shape}), the body has {len(body)}",
                value,
            )
        return np.frombuffer(body[start:stop], dtype=_DTYPES[dtype]).reshape(shape)

    def strings(name: str, optional: bool = False, shared: bool = False) -> list[Any]:
        column = header.get(name)
        if shared and type(column) is list and len(column) == 1 and n > 1:
            column = column * n  # one value for every row
        if type(column) is not list or len(column) != n:
            raise _bad(f"column {name}: want a list of {n}, got {_shape(column)}", value)
        if not optional:
            with contextlib.suppress(TypeError):
                "".join(column)  # raises TypeError unless every value is a str (checked in C)
                return column
        kinds = set(map(type, column))
        if not kinds <= ({str, type(None)} if optional else {str}):
            raise _bad(f"column {name}: values of type {sorted(k.__name__ for k in kinds)}", value)
        return column

    def labels(name: str) -> np.ndarray | list[Label]:
        values = array(name)
        if values is not None:
            return values
        column = header.get(name)
        if type(column) is not list or len(column) != n:
            raise _bad(f"column {name}: want {n} values, got {_shape(column)}", value)
        kinds = set(map(type, column))
        if not kinds <= _LABEL_TYPES:
            raise _bad(
                f"column {name}: a label must be a number or a string, got {sorted(map(str, kinds))}", value
            )
        if kinds <= _NUMBER_LABELS:
            return np.asarray(column, dtype=float)
        return [v if type(v) is str else float(v) for v in column] if int in kinds else column

    row = array("row")
    event_time, truth_time = array("event_time"), array("truth_time")
    if row is None or event_time is None or truth_time is None:
        raise _bad("an array of row, event_time, truth_time is missing", value)
    features: np.ndarray | list[Any] | None = array("features")
    if features is None:
        features = header.get("features")
        if type(features) is not list or len(features) != n or not all(type(f) is list for f in features):
            raise _bad(f"column features: want {n} lists, got {_shape(features)}", value)
    columns = LabelledColumns(
        strings("example_id"),
        strings("request_id"),
        row,
        features,
        labels("prediction"),
        labels("truth"),
        strings("endpoint", shared=True),
        strings("model_version", shared=True),
        event_time,
        truth_time,
        strings("joined_by", shared=True),
        strings("asset_id", optional=True, shared=True),
    )
    probabilities, classes = header.get("probabilities"), header.get("classes")
    if probabilities is not None or classes is not None:
        columns.probabilities, columns.classes = _class_columns(probabilities, classes, n, value)
    return columns


def _class_columns(
    probabilities: Any, classes: Any, n: int, value: bytes
) -> tuple[list[tuple[float, ...] | None], list[tuple[Label, ...] | None]]:
    probs_out: list[tuple[float, ...] | None] = [None] * n
    classes_out: list[tuple[Label, ...] | None] = [None] * n
    for name, column in (("probabilities", probabilities), ("classes", classes)):
        if column is not None and (type(column) is not list or len(column) != n):
            raise _bad(f"column {name}: want a list of {n}, got {_shape(column)}", value)
    for i in range(n):
        p = None if probabilities is None else probabilities[i]
        c = None if classes is None else classes[i]
        if p is not None:
            if type(p) is not list or not set(map(type, p)) <= _NUMBER_LABELS:
                raise _bad(f"row {i}: probabilities {p!r} are not numbers", value)
            probs_out[i] = tuple(map(float, p))
        if c is not None:
            if type(c) is not list or not set(map(type, c)) <= _LABEL_TYPES:
                raise _bad(f"row {i}: classes {c!r} are not labels", value)
            classes_out[i] = tuple(v if type(v) is str else float(v) for v in c)
        if p is not None and c is not None and len(p) != len(c):
            raise _bad(f"row {i}: {len(p)} probabilities for {len(c)} classes", value)
    return probs_out, classes_out


def _shape(value: Any) -> str:
    return f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
