"""The records on the feedback side's topics, as typed values with one JSON encoding each.

- ``TruthRecord`` (topic ``driftloop.feedback``, key = request id): the true value of one row of a logged
  prediction, as accepted by ``POST /v1/feedback``.
- ``Reading`` (topic ``driftloop.telemetry`` key = asset id; and ``driftloop.feedback`` for readings
  posted to the API): an asset's measured values at an event time.
- ``PredictionRow`` (internal topic ``driftloop.predictions``, key = asset id): one row of a logged
  prediction, forwarded for the asset + event-time join.
- ``LabelledExample`` (topic ``driftloop.labelled``, key = request id): features, prediction and truth.
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


@dataclass(frozen=True)
class LabelledExample:
    example_id: str
    request_id: str
    row: int
    features: tuple[float, ...]
    prediction: float
    truth: float
    endpoint: str
    model_version: str
    event_time: float
    truth_time: float
    joined_by: str  # "request" | "asset"
    asset_id: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(self)  # orjson writes a dataclass's fields in order, as dict(self.__dict__)

    @classmethod
    def decode(cls, value: bytes) -> LabelledExample:
        data = orjson.loads(value)
        data["features"] = tuple(data["features"])
        return cls(**data)
