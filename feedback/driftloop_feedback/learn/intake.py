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
    """(example_id, features, truth, prediction, model_version, event_time) of a record outside the
    plain shape, read by ``LabelledExample.decode``; or why it cannot be read."""
    try:
        e = LabelledExample.decode(value)
    except UndecodableRecord as exc:
        return str(exc)
    return (e.example_id, list(e.features), e.truth, e.prediction, e.model_version, e.event_time)


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


def read_poll(records: list[Record], deduper: LabelledDeduper, challenger: Challenger) -> Intake:
    docs = list(map(_decoded, [r.value for r in records]))
    plain = list(map(_plain, docs))
    refused: list[Refusal] = []
    kept: list[int] = []
    fields: list[tuple[Any, ...]] = []
    if all(plain):
        kept = list(range(len(records)))
        fields = [
            (
                d["example_id"],
                d["features"],
                d["truth"],
                d["prediction"],
                d["model_version"],
                d["event_time"],
            )
            for d in docs
        ]
    else:
        for i, (record, doc, is_plain) in enumerate(zip(records, docs, plain, strict=True)):
            if is_plain:
                got: tuple[Any, ...] | str = (
                    doc["example_id"],
                    doc["features"],
                    doc["truth"],
                    doc["prediction"],
                    doc["model_version"],
                    doc["event_time"],
                )
            else:
                got = _fields(record.value)
            if isinstance(got, str):
                refused.append(Refusal(record, "undecodable", got))
                continue
            kept.append(i)
            fields.append(got)
    before = deduper.duplicates
    first = deduper.first_seen([f[0] for f in fields])
    duplicates = deduper.duplicates - before
    if not all(first):
        kept = [i for i, keep in zip(kept, first, strict=True) if keep]
        fields = [f for f, keep in zip(fields, first, strict=True) if keep]
    n = challenger.n_features
    X, usable = _matrix([f[1] for f in fields], n)
    targets = [f[2] for f in fields]
    accepted = challenger.accepted(targets)
    good = usable & accepted
    if not good.all():
        for j in np.flatnonzero(~good).tolist():
            record = records[kept[j]]
            if not usable[j]:
                refused.append(
                    Refusal(record, "features", f"features {fields[j][1]!r}, want {n} finite numbers")
                )
            else:
                refused.append(
                    Refusal(
                        record, "target", f"target {targets[j]!r} is not a finite number or a declared class"
                    )
                )
        keep = np.flatnonzero(good).tolist()
        X = X[good]
        kept = [kept[j] for j in keep]
        fields = [fields[j] for j in keep]
        targets = [targets[j] for j in keep]
    picked = [records[i] for i in kept]
    rows = Rows(
        X=X,
        targets=targets,
        predictions=[f[3] for f in fields],
        versions=[f[4] for f in fields],
        ids=[f[0] for f in fields],
        event_times=np.array([f[5] for f in fields], dtype=float),
        sources=[f"{r.topic}/{r.partition}" for r in picked],
        offsets=np.array([r.offset for r in picked], dtype=np.int64),
    )
    refused.sort(key=lambda r: (r.record.topic, r.record.partition, r.record.offset))
    return Intake(rows, duplicates, refused)
