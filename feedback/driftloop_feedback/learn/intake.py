"""One poll of labelled records read at once: decoded, deduplicated and checked as arrays.

The trainer reads a poll (up to ``poll_max_records`` records) in one go instead of one record at a
time: each value is decoded with ``orjson``, the fields the trainer uses are gathered into lists, the
features become one ``float`` matrix and the checks run on arrays. The rules are those of
``LabelledExample.decode`` plus the trainer's own checks, in this order, each refusal counted with its
reason:

1. ``undecodable``: not JSON, not an object, a field of ``LabelledExample`` missing or of a type it
   does not accept. A record with anything beyond the plain shape the joiner writes (an integer truth,
   ``probabilities``/``classes``) is read by ``LabelledExample.decode`` itself, one at a time.
2. duplicates: an ``example_id`` seen within the deduper's window (``LabelledDeduper``) is skipped.
3. ``features``: not all finite numbers, or another count than the model's.
4. ``target``: not a finite number (regression) or not one of the declared classes (classification).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, contains, itemgetter
from typing import Any

import numpy as np
import orjson

from driftloop.eventlog import Record
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.learn.challenger import Challenger
from driftloop_feedback.records import LabelledExample, UndecodableRecord

REQUIRED = frozenset(
    (
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
    )
)
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
    targets: list[Any]
    predictions: list[Any]  # what the served model predicted (``LabelledExample.prediction``)
    versions: list[str]  # the model version that served each
    ids: list[str]
    event_times: np.ndarray  # float
    truth_times: np.ndarray  # float: ``LabelledExample.truth_time``
    by_request: np.ndarray  # bool: joined by request id (``truth_time`` = when the feedback API got it)
    sources: list[str]  # "topic/partition"
    offsets: np.ndarray  # int

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int) -> Rows:
        return Rows(
            self.X[:n],
            self.targets[:n],
            self.predictions[:n],
            self.versions[:n],
            self.ids[:n],
            self.event_times[:n],
            self.truth_times[:n],
            self.by_request[:n],
            self.sources[:n],
            self.offsets[:n],
        )

    def tail(self, n: int) -> Rows:
        return Rows(
            self.X[n:],
            self.targets[n:],
            self.predictions[n:],
            self.versions[n:],
            self.ids[n:],
            self.event_times[n:],
            self.truth_times[n:],
            self.by_request[n:],
            self.sources[n:],
            self.offsets[n:],
        )

    def then(self, more: Rows) -> Rows:
        if not len(self):
            return more
        return Rows(
            np.concatenate([self.X, more.X]),
            self.targets + more.targets,
            self.predictions + more.predictions,
            self.versions + more.versions,
            self.ids + more.ids,
            np.concatenate([self.event_times, more.event_times]),
            np.concatenate([self.truth_times, more.truth_times]),
            np.concatenate([self.by_request, more.by_request]),
            self.sources + more.sources,
            np.concatenate([self.offsets, more.offsets]),
        )


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


def read_poll(records: list[Record], deduper: LabelledDeduper, challenger: Challenger) -> Intake:
    docs = _decoded_all([r.value for r in records])
    refused: list[Refusal] = []
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
        columns = [list(c) for c in zip(*fields, strict=True)] if fields else [[] for _ in _READ]
    ids, features, targets, predictions, versions, times, truth_times, joined = columns
    before = deduper.duplicates
    first = deduper.first_seen(ids)
    duplicates = deduper.duplicates - before
    n = challenger.n_features
    X, usable = _matrix(features, n)
    good = usable & challenger.accepted(targets)
    for j in np.flatnonzero(~good).tolist():
        if not first[j]:
            continue  # a duplicate: skipped (counted) before it is checked
        record = records[kept[j]]
        if not usable[j]:
            refused.append(Refusal(record, "features", f"features {features[j]!r}, want {n} finite numbers"))
        else:
            refused.append(
                Refusal(record, "target", f"target {targets[j]!r} is not a finite number or a declared class")
            )
    good &= np.asarray(first, dtype=bool)
    if not good.all():
        keep = np.flatnonzero(good).tolist()
        X = X[good]
        kept = [kept[j] for j in keep]
        ids, targets, predictions, versions, times, truth_times, joined = (
            [column[j] for j in keep]
            for column in (ids, targets, predictions, versions, times, truth_times, joined)
        )
    picked = records if len(kept) == len(records) else [records[i] for i in kept]
    rows = Rows(
        X=X,
        targets=targets,
        predictions=predictions,
        versions=versions,
        ids=ids,
        event_times=np.array(times, dtype=float),
        truth_times=np.array(truth_times, dtype=float),
        by_request=np.fromiter(map("request".__eq__, joined), dtype=bool, count=len(joined)),
        sources=list(map("{0.topic}/{0.partition}".format, picked)),
        offsets=np.fromiter(map(attrgetter("offset"), picked), dtype=np.int64, count=len(picked)),
    )
    if refused:
        refused.sort(key=lambda r: (r.record.topic, r.record.partition, r.record.offset))
    return Intake(rows, duplicates, refused)
