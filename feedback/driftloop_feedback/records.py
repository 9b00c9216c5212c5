"""The records on the feedback side's topics, as typed values with one JSON encoding each.

- ``TruthRecord`` (topic ``driftloop.feedback``, key = request id): the true value of one row of a logged
  prediction, as accepted by ``POST /v1/feedback``.
- ``Reading`` (topic ``driftloop.telemetry`` key = asset id; and ``driftloop.feedback`` for readings
  posted to the API): an asset's measured values at an event time.
- ``PredictionRow`` (internal topic ``driftloop.predictions``, key = asset id): one row of a logged
  prediction, forwarded for the asset + event-time join.
- ``LabelledExample`` (topic ``driftloop.labelled``, key = request id): features, prediction and truth
  (real values, or class labels with optional class probabilities).
  ``example_id`` = ``<request_id>:<row>`` identifies it; a resend/replay carries the same id and content.

Record ids are deterministic (a hash of what identifies the record), so a resend is recognised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

KIND_TRUTH = "truth"
KIND_READING = "reading"
TRUTH_PREFIX = b'{"kind":"truth"'  # how every TruthRecord.encode() starts (orjson keeps key order)


def record_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def truth_record_id(request_id: str, row: int) -> str:
    return record_id(KIND_TRUTH, request_id, str(row))


def reading_record_id(asset_id: str, event_time: float) -> str:
    return record_id(KIND_READING, asset_id, repr(float(event_time)))


def _dumps(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)


@dataclass(frozen=True)
class TruthRecord:
    request_id: str
    row: int
    truth: float
    received_at: float

    @property
    def record_id(self) -> str:
        return truth_record_id(self.request_id, self.row)

    def encode(self) -> bytes:
        return _dumps(
            {
                "kind": KIND_TRUTH,
                "record_id": self.record_id,
                "request_id": self.request_id,
                "row": self.row,
                "truth": self.truth,
                "received_at": self.received_at,
            }
        )


@dataclass(frozen=True)
class Reading:
    asset_id: str
    event_time: float
    values: dict[str, float]

    @property
    def record_id(self) -> str:
        return reading_record_id(self.asset_id, self.event_time)

    def encode(self) -> bytes:
        payload = {"kind": KIND_READING, "record_id": self.record_id, "asset_id": self.asset_id}
        return _dumps({**payload, "event_time": self.event_time, "values": self.values})


class UndecodableRecord(ValueError):
    """A record on a feedback-side topic is not the JSON this module writes."""


def decode_truth_fields(data: dict[str, Any]) -> tuple[str, int, float, float]:
    """(request_id, row, truth, received_at) of a decoded truth record; raises what ``decode_feedback``
    turns into ``UndecodableRecord``."""
    return (
        str(data["request_id"]),
        int(data["row"]),
        float(data["truth"]),
        float(data.get("received_at", 0.0)),
    )


def decode_feedback(value: bytes) -> TruthRecord | Reading:
    """A record of ``driftloop.feedback`` or ``driftloop.telemetry`` (telemetry carries no ``kind``)."""
    try:
        data = orjson.loads(value)
        if data.get("kind", KIND_READING) == KIND_TRUTH:
            return TruthRecord(*decode_truth_fields(data))
        values = {str(k): float(v) for k, v in dict(data["values"]).items()}
        return Reading(asset_id=str(data["asset_id"]), event_time=float(data["event_time"]), values=values)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UndecodableRecord(f"not a truth record or reading: {exc!r}; value={value[:200]!r}") from exc


@dataclass(frozen=True)
class PredictionRow:
    request_id: str
    row: int
    features: tuple[float, ...]
    prediction: float
    event_time: float
    endpoint: str
    model_version: str
    asset_id: str | None = None
    horizon_s: float | None = None
    logged_at: float = 0.0

    @property
    def example_id(self) -> str:
        return f"{self.request_id}:{self.row}"

    def encode(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def decode(cls, value: bytes) -> PredictionRow:
        try:
            data = orjson.loads(value)
            data["features"] = tuple(float(x) for x in data["features"])
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise UndecodableRecord(f"not a prediction row: {exc!r}; value={value[:200]!r}") from exc


_FLOATS = frozenset({float})
Label = float | str  # a real value, or a class label (numbers are decoded as float)


def _label(value: Any, field: str) -> Label:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number or a class label string, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class LabelledExample:
    """A joined example: features, what the model predicted and the truth.

    Regression: ``prediction`` and ``truth`` are floats. Classification: they are class labels (numeric
    labels as floats, string labels as str); ``classes`` lists the served model's classes in the column
    order of ``probabilities`` (the ``probabilities`` tensor of the response) when the producer knows them.
    Both optional fields are left out of the JSON when unset, so a regression example encodes as before
    and records written before they existed decode with them ``None``.

    >>> e = LabelledExample("r1:0", "r1", 0, (1.0,), "hot", "ok", "main", "3", 10.0, 11.0, "request",
    ...                     probabilities=(0.7, 0.3), classes=("hot", "ok"))
    >>> LabelledExample.decode(e.encode()) == e
    True
    >>> LabelledExample.decode(b'{"example_id": "r1:0", "request_id": "r1", "row": 0, "features": [1],'
    ...   b' "prediction": 2, "truth": 2.5, "endpoint": "main", "model_version": "3", "event_time": 10,'
    ...   b' "truth_time": 11, "joined_by": "request"}').prediction
    2.0
    """

    example_id: str
    request_id: str
    row: int
    features: tuple[float, ...]
    prediction: Label
    truth: Label
    endpoint: str
    model_version: str
    event_time: float
    truth_time: float
    joined_by: str  # "request" | "asset"
    asset_id: str | None = None
    probabilities: tuple[float, ...] | None = None  # classification: one per class, ``classes`` order
    classes: tuple[Label, ...] | None = None  # classification: the served model's class list

    def encode(self) -> bytes:
        payload: dict[str, Any] = {
            "example_id": self.example_id,
            "request_id": self.request_id,
            "row": self.row,
            "features": self.features,
            "prediction": self.prediction,
            "truth": self.truth,
            "endpoint": self.endpoint,
            "model_version": self.model_version,
            "event_time": self.event_time,
            "truth_time": self.truth_time,
            "joined_by": self.joined_by,
            "asset_id": self.asset_id,
        }
        if self.probabilities is not None:
            payload["probabilities"] = self.probabilities
        if self.classes is not None:
            payload["classes"] = self.classes
        return orjson.dumps(payload)

    @classmethod
    def decode(cls, value: bytes) -> LabelledExample:
        """Raises ``UndecodableRecord`` (saying what is wrong) for anything ``encode`` does not write."""
        try:
            data = orjson.loads(value)
            features, prediction, truth = data["features"], data["prediction"], data["truth"]
            # the usual record holds floats only: checked in C (map/set), converted only otherwise
            features = tuple(features) if set(map(type, features)) <= _FLOATS else tuple(map(float, features))
            probabilities = data.get("probabilities")
            classes = data.get("classes")
            asset_id = data.get("asset_id")
            example = cls(
                str(data["example_id"]),
                str(data["request_id"]),
                int(data["row"]),
                features,
                prediction if type(prediction) is float else _label(prediction, "prediction"),
                truth if type(truth) is float else _label(truth, "truth"),
                str(data["endpoint"]),
                str(data["model_version"]),
                float(data["event_time"]),
                float(data["truth_time"]),
                str(data["joined_by"]),
                None if asset_id is None else str(asset_id),
                None if probabilities is None else tuple(map(float, probabilities)),
                None if classes is None else tuple(_label(c, "classes") for c in classes),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise UndecodableRecord(f"not a labelled example: {exc!r}; value={value[:200]!r}") from exc
        if (
            example.probabilities is not None
            and example.classes is not None
            and len(example.probabilities) != len(example.classes)
        ):
            raise UndecodableRecord(
                f"labelled example {example.example_id}: {len(example.probabilities)} probabilities for "
                f"{len(example.classes)} classes; value={value[:200]!r}"
            )
        return example
