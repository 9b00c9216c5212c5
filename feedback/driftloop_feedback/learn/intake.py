"""One poll of labelled records read at once: decoded, deduplicated and checked as arrays.

The trainer reads a poll (up to ``poll_max_records`` records) in one go instead of one record at a
time. Batch records (``driftloop_feedback.labelled_batch``, what the joiner writes) are read as
columns: one JSON header and ``np.frombuffer`` per record, no Python object per example. JSON records
(one example each, the format before) are decoded with ``orjson``, the fields the trainer uses
gathered into lists, the features made one ``float`` matrix. A poll holding both is read run by run,
in order. Then the checks run on arrays, in this order, each refusal counted with its reason:

1. ``undecodable``: a JSON record that is not JSON, not an object, a field of ``LabelledExample``
   missing or of a type it does not accept (a record with anything beyond the plain shape the joiner
   wrote, an integer truth, ``probabilities``/``classes``, is read by ``LabelledExample.decode``
   itself); a batch record that ``decode_columns`` refuses (truncated, unknown version, a column of
   the wrong length or type): the whole record, once.
2. duplicates: an ``example_id`` seen within the deduper's window (``LabelledDeduper``) is skipped.
3. ``features``: not all finite numbers, or another count than the model's.
4. ``target``: not a finite number (regression) or not one of the declared classes (classification).

A refusal names its record (topic, partition, offset) and, in a batch record, the example's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby, repeat
from operator import attrgetter, contains, itemgetter
from typing import Any

import numpy as np
import orjson

from driftloop.eventlog import Record
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.labelled_batch import FIELDS, MAGIC, LabelledColumns, decode_columns
from driftloop_feedback.learn.challenger import Challenger
from driftloop_feedback.records import LabelledExample, UndecodableRecord

REQUIRED = frozenset(FIELDS[: FIELDS.index("joined_by") + 1])  # asset_id and the class fields are optional
_NUMBERS = (float, int)  # ``type(x) in`` excludes bool, as decode does
_LABELS = (float, str)


def _plain(doc: Any) -> bool:
    """Whether a decoded value has the plain shape the joiner writes, every field of the type decode
    keeps as it is (anything else goes through ``LabelledExample.decode``)."""
    return (
        type(doc) is dict
        and doc.keys() >= REQUIRED
        and type(doc["example_id"]) is str
        and type(doc["truth"]) in _LABELS
        and type(doc["prediction"]) in _LABELS
        and type(doc["event_time"]) in _NUMBERS
        and type(doc["truth_time"]) in _NUMBERS
        and type(doc["row"]) is int
        and type(doc["model_version"]) is str
        and type(doc["joined_by"]) is str
        and type(doc["features"]) is list
        and "probabilities" not in doc
        and "classes" not in doc
    )


@dataclass
class Rows:
    """Examples ready to learn, in the order they were read."""

    X: np.ndarray  # [n, F] float
    targets: Any  # a float array (regression, batch records) or a list of values
    predictions: Any  # what the served model predicted (``LabelledExample.prediction``): the same
    versions: list[str]  # the model version that served each
    ids: list[str]
    event_times: np.ndarray  # float
    truth_times: np.ndarray  # float: ``LabelledExample.truth_time``
    by_request: np.ndarray  # bool: joined by request id (``truth_time`` = when the feedback API got it)
    sources: list[str]  # "topic/partition"
    offsets: np.ndarray  # int

    def __len__(self) -> int:
        return len(self.ids)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(
            self.X[start:stop],
            self.targets[start:stop],
            self.predictions[start:stop],
            self.versions[start:stop],
            self.ids[start:stop],
            self.event_times[start:stop],
            self.truth_times[start:stop],
            self.by_request[start:stop],
            self.sources[start:stop],
            self.offsets[start:stop],
        )

    def then(self, more: Rows) -> Rows:
        if not len(self):
            return more
        return Rows(
            np.concatenate([self.X, more.X]),
            _then(self.targets, more.targets),
            _then(self.predictions, more.predictions),
            self.versions + more.versions,
            self.ids + more.ids,
            np.concatenate([self.event_times, more.event_times]),
            np.concatenate([self.truth_times, more.truth_times]),
            np.concatenate([self.by_request, more.by_request]),
            self.sources + more.sources,
            np.concatenate([self.offsets, more.offsets]),
        )


def _then(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.concatenate([a, b])
    return list(a) + list(b)


@dataclass
class Refusal:
    record: Record
    reason: str  # "undecodable" | "features" | "target"
    detail: str


@dataclass
class Intake:
    rows: Rows
    duplicates: int
    refused: list[Refusal]
    # examples read: every example of the records (kept, duplicate or refused), an undecodable record
    # counted as one
    examples: int = 0


def _decoded(value: bytes) -> Any:
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _fields(value: bytes) -> tuple[Any, ...] | str:
    """(example_id, features, truth, prediction, model_version, event_time, truth_time, joined_by) of a
    record outside the plain shape, read by ``LabelledExample.decode``; or why it cannot be read."""
    try:
        e = LabelledExample.decode(value)
    except UndecodableRecord as exc:
        return str(exc)
    return (
        e.example_id,
        list(e.features),
        e.truth,
        e.prediction,
        e.model_version,
        e.event_time,
        e.truth_time,
        e.joined_by,
    )


def _matrix(features: list[Any], n_features: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows as one float matrix of ``n_features`` columns and whether each row is usable."""
    width = n_features if n_features is not None else (len(features[0]) if features else 0)
    try:
        X = np.array(features, dtype=float)
        if X.ndim == 2 and X.shape[1] == width:
            return X, np.isfinite(X).all(axis=1)
    except (TypeError, ValueError):  # ragged, or a value that is not a number
        pass
    X = np.zeros((len(features), width))
    ok = np.zeros(len(features), dtype=bool)
    for i, row in enumerate(features):
        try:
            values = np.asarray(row, dtype=float)
        except (TypeError, ValueError):
            continue
        if values.shape == (width,) and np.isfinite(values).all():
            X[i] = values
            ok[i] = True
    return X, ok


_READ = (
    "example_id",
    "features",
    "truth",
    "prediction",
    "model_version",
    "event_time",
    "truth_time",
    "joined_by",
)
_OTHERS = tuple(sorted(REQUIRED.difference(_READ)))
_COLUMN_TYPES: dict[str, set[type]] = {
    "example_id": {str},
    "features": {list},
    "truth": set(_LABELS),
    "prediction": set(_LABELS),
    "model_version": {str},
    "event_time": set(_NUMBERS),
    "truth_time": set(_NUMBERS),
    "joined_by": {str},
    "row": {int},
}


_GET_ALL = itemgetter(*(_READ + _OTHERS))
_CHECKED = [_COLUMN_TYPES.get(key) for key in _READ + _OTHERS]


def _columns(docs: list[Any]) -> list[list[Any]] | None:
    """The fields the trainer reads (``_READ`` order), as columns, if every decoded value has the plain
    shape (``_plain``, checked a column at a time); else None."""
    if not docs or set(map(type, docs)) != {dict}:
        return None
    try:
        columns = list(map(list, zip(*map(_GET_ALL, docs), strict=True)))  # one C call per record
    except KeyError:
        return None
    for wanted, column in zip(_CHECKED, columns, strict=True):
        if wanted is not None and not set(map(type, column)) <= wanted:
            return None
    if any(map(contains, docs, repeat("probabilities"))) or any(map(contains, docs, repeat("classes"))):
        return None
    return columns[: len(_READ)]


def _decoded_all(values: list[bytes]) -> list[Any]:
    """Each value decoded (None where it is not JSON): one ``orjson.loads`` per value, no Python call
    between them unless one fails."""
    try:
        return list(map(orjson.loads, values))
    except orjson.JSONDecodeError:
        return list(map(_decoded, values))


@dataclass
class _Part:
    """The examples of consecutive records of one format, as columns, before dedupe and checks."""

    X: np.ndarray  # [n, F]
    usable: np.ndarray  # bool: features all finite, F of them
    features: Any  # the features as read (for a refusal's message)
    ids: list[str]
    targets: Any  # float array (batch records, regression) or a list
    predictions: Any
    versions: list[str]
    times: np.ndarray
    truth_times: np.ndarray
    by_request: np.ndarray  # bool
    record: np.ndarray  # index of each row's record in the poll
    index: np.ndarray  # each row's index within its record

    def __len__(self) -> int:
        return len(self.ids)


def _json_part(
    records: list[Record], first: int, n_features: int | None, refused: list[Refusal]
) -> _Part | None:
    """The JSON records ``records`` (the poll's from ``first`` on), one example each."""
    docs = _decoded_all([r.value for r in records])
    kept = list(range(len(records)))
    columns = _columns(docs)
    if columns is None:  # some record is not plain: one at a time, saying which
        fields: list[tuple[Any, ...]] = []
        kept = []
        for i, (record, doc) in enumerate(zip(records, docs, strict=True)):
            got = tuple(doc[key] for key in _READ) if _plain(doc) else _fields(record.value)
            if isinstance(got, str):
                refused.append(Refusal(record, "undecodable", got))
                continue
            kept.append(i)
            fields.append(got)
        if not fields:
            return None
        columns = [list(c) for c in zip(*fields, strict=True)]
    ids, features, targets, predictions, versions, times, truth_times, joined = columns
    X, usable = _matrix(features, n_features)
    n = len(ids)
    return _Part(
        X,
        usable,
        features,
        ids,
        targets,
        predictions,
        versions,
        np.array(times, dtype=float),
        np.array(truth_times, dtype=float),
        np.fromiter(map("request".__eq__, joined), dtype=bool, count=n),
        np.asarray(kept, dtype=np.int64) + first,
        np.zeros(n, dtype=np.int64),
    )


def _labels(values: Any, numeric: bool) -> Any:
    """A target/prediction column as the trainer reads it: a float array for a regressor's, a list of
    Python values for a classifier's (labels compared as values)."""
    if isinstance(values, np.ndarray):
        return values if numeric else values.tolist()
    return np.asarray(values, dtype=float) if numeric and set(map(type, values)) <= {float} else values


def _batch_part(
    records: list[Record], first: int, n_features: int | None, numeric: bool, refused: list[Refusal]
) -> _Part | None:
    """The batch records ``records`` (the poll's from ``first`` on): columns, no object per example."""
    got: list[LabelledColumns] = []
    at: list[int] = []
    for i, record in enumerate(records):
        try:
            got.append(decode_columns(record.value))
        except UndecodableRecord as exc:
            refused.append(Refusal(record, "undecodable", str(exc)))
            continue
        at.append(first + i)
    got_n = [c for c in got if len(c)]
    if not got_n:
        return None
    sizes = np.fromiter(map(len, got), dtype=np.int64, count=len(got))
    width = n_features if n_features is not None else _width(got_n[0].features)
    blocks = []
    for c in got:
        if isinstance(c.features, np.ndarray) and c.features.shape[1] == width:
            blocks.append((c.features, np.isfinite(c.features).all(axis=1)))
        else:
            blocks.append(_matrix(list(c.features), width))
    X = blocks[0][0] if len(blocks) == 1 else np.concatenate([b[0] for b in blocks])
    usable = blocks[0][1] if len(blocks) == 1 else np.concatenate([b[1] for b in blocks])
    raw: Any = X if all(isinstance(c.features, np.ndarray) for c in got) else _chain(c.features for c in got)

    def column(name: str) -> Any:
        values = [getattr(c, name) for c in got]
        if len(values) == 1:
            return values[0]
        if all(isinstance(v, np.ndarray) for v in values):
            return np.concatenate(values)
        return _chain(values)

    targets, predictions = column("truth"), column("prediction")
    joined = _chain(c.joined_by for c in got)
    by_request = (
        np.ones(len(joined), dtype=bool)
        if joined.count("request") == len(joined)
        else np.fromiter(map("request".__eq__, joined), dtype=bool, count=len(joined))
    )
    return _Part(
        X,
        usable,
        raw,
        _chain(c.example_id for c in got),
        _labels(targets, numeric),
        _labels(predictions, numeric),
        _chain(c.model_version for c in got),
        column("event_time"),
        column("truth_time"),
        by_request,
        np.repeat(np.asarray(at, dtype=np.int64), sizes),
        np.concatenate([np.arange(n, dtype=np.int64) for n in sizes.tolist()]),
    )


def _width(features: Any) -> int:
    if isinstance(features, np.ndarray):
        return int(features.shape[1])
    return len(features[0]) if features else 0


def _chain(lists: Any) -> list[Any]:
    out: list[Any] = []
    for values in lists:
        out.extend(values.tolist() if isinstance(values, np.ndarray) else values)
    return out


def _joined(parts: list[_Part]) -> _Part:
    if len(parts) == 1:
        return parts[0]

    def cat(values: list[Any]) -> Any:
        if all(isinstance(v, np.ndarray) for v in values):
            return np.concatenate(values)
        return _chain(values)

    return _Part(
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.usable for p in parts]),
        _chain(list(p.features) for p in parts),
        _chain(p.ids for p in parts),
        cat([p.targets for p in parts]),
        cat([p.predictions for p in parts]),
        _chain(p.versions for p in parts),
        np.concatenate([p.times for p in parts]),
        np.concatenate([p.truth_times for p in parts]),
        np.concatenate([p.by_request for p in parts]),
        np.concatenate([p.record for p in parts]),
        np.concatenate([p.index for p in parts]),
    )


def read_poll(records: list[Record], deduper: LabelledDeduper, challenger: Challenger) -> Intake:
    """The examples of a poll's records (JSON records and batch records alike, in order), deduplicated
    and checked; every refusal with its record (and the example's index in a batch record)."""
    refused: list[Refusal] = []
    n = challenger.n_features
    numeric = challenger.classes is None
    parts: list[_Part] = []
    first = 0
    for batch, run in groupby(records, key=_is_batch):
        chunk = list(run)
        part = (
            _batch_part(chunk, first, n, numeric, refused) if batch else _json_part(chunk, first, n, refused)
        )
        first += len(chunk)
        if part is not None and len(part):
            parts.append(part)
    if not parts:
        refused.sort(key=lambda r: (r.record.topic, r.record.partition, r.record.offset))
        return Intake(_empty_rows(n), 0, refused, len(refused))
    p = _joined(parts)
    before = deduper.duplicates
    fresh = np.asarray(deduper.first_seen(p.ids), dtype=bool)
    duplicates = deduper.duplicates - before
    good = p.usable & challenger.accepted(p.targets)
    for j in np.flatnonzero(~good & fresh).tolist():  # a duplicate is skipped (counted) before it is checked
        record = records[int(p.record[j])]
        where = f"example {int(p.index[j])} of the record: " if _is_batch(record) else ""
        if not p.usable[j]:
            detail = f"{where}features {_shown(p.features[j])}, want {n} finite numbers"
            refused.append(Refusal(record, "features", detail))
        else:
            detail = f"{where}target {p.targets[j]!r} is not a finite number or a declared class"
            refused.append(Refusal(record, "target", detail))
    good &= fresh
    X, ids, targets, predictions, versions = p.X, p.ids, p.targets, p.predictions, p.versions
    times, truth_times, by_request, at = p.times, p.truth_times, p.by_request, p.record
    if not good.all():
        keep = np.flatnonzero(good)
        listed = keep.tolist()
        X, times, truth_times, by_request, at = (
            X[keep],
            times[keep],
            truth_times[keep],
            by_request[keep],
            at[keep],
        )
        ids, versions = [ids[j] for j in listed], [versions[j] for j in listed]
        targets, predictions = (
            v[keep] if isinstance(v, np.ndarray) else [v[j] for j in listed] for v in (targets, predictions)
        )
    rows = Rows(
        X=X,
        targets=targets,
        predictions=predictions,
        versions=versions,
        ids=ids,
        event_times=times,
        truth_times=truth_times,
        by_request=by_request,
        sources=_sources(records, at),
        offsets=np.fromiter(map(attrgetter("offset"), records), dtype=np.int64, count=len(records))[at]
        if len(records)
        else np.zeros(0, dtype=np.int64),
    )
    if refused:
        refused.sort(key=lambda r: (r.record.topic, r.record.partition, r.record.offset))
    undecodable = sum(r.reason == "undecodable" for r in refused)
    return Intake(rows, duplicates, refused, len(p) + undecodable)


def _is_batch(record: Record) -> bool:
    return record.value[:4] == MAGIC


def _shown(features: Any) -> str:
    return repr(features.tolist() if isinstance(features, np.ndarray) else features)


def _sources(records: list[Record], at: np.ndarray) -> list[str]:
    """ "topic/partition" of each row (by its record's index), one string per distinct record."""
    names = np.array(list(map("{0.topic}/{0.partition}".format, records)), dtype=object)
    out: list[str] = names[at].tolist()
    return out


def _empty_rows(n_features: int | None) -> Rows:
    empty = np.zeros(0)
    return Rows(
        np.zeros((0, n_features or 0)),
        [],
        [],
        [],
        [],
        empty,
        empty,
        empty.astype(bool),
        [],
        empty.astype(np.int64),
    )
