"""A request body in, the records to write out, or a refusal: the whole body is decoded, validated
and counted against the caps before anything is written (all or nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from driftloop_feedback.api.models import (
    FeedbackBatch,
    FeedbackBody,
    FeedbackItem,
    TruthByPrediction,
    TruthRowsByPrediction,
)
from driftloop_feedback.api.problems import ApiError, invalid_body
from driftloop_feedback.records import Reading, TruthRecord

_BODY: TypeAdapter[FeedbackBatch | FeedbackItem] = TypeAdapter(FeedbackBody)


@dataclass(frozen=True)
class Row:
    """One record to write: its id, the log key and the encoded value."""

    record_id: str
    key: bytes
    value: bytes


def decode_body(body: bytes) -> list[FeedbackItem]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400,
            "invalid_encoding",
            f"the body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}): send JSON in UTF-8",
        ) from None
    try:
        parsed = _BODY.validate_json(text)
    except ValidationError as exc:
        raise invalid_body(exc) from None
    return list(parsed.records) if isinstance(parsed, FeedbackBatch) else [parsed]


def count_rows(items: list[FeedbackItem]) -> int:
    """Records the items become: one per truth value, one per reading."""
    return sum(len(item.truth) if isinstance(item, TruthRowsByPrediction) else 1 for item in items)


def check_rows(items: list[FeedbackItem], max_rows: int) -> int:
    rows = count_rows(items)
    if rows > max_rows:
        raise ApiError(
            413,
            "too_many_rows",
            f"the request holds {rows} rows (truth values + readings, in {len(items)} records); the limit "
            f"is {max_rows} per request (DRIFTLOOP_FEEDBACK_MAX_ROWS): split it into smaller requests",
        )
    return rows


def to_rows(items: list[FeedbackItem], received_at: float) -> list[Row]:
    rows: list[Row] = []
    for item in items:
        if isinstance(item, TruthRowsByPrediction):
            key = item.request_id.encode()
            for row, truth in enumerate(item.truth):
                record = TruthRecord(item.request_id, row, truth, received_at)
                rows.append(Row(record.record_id, key, record.encode()))
        elif isinstance(item, TruthByPrediction):
            record = TruthRecord(item.request_id, item.row or 0, item.truth, received_at)
            rows.append(Row(record.record_id, item.request_id.encode(), record.encode()))
        else:
            reading = Reading(item.asset_id, item.event_time, dict(item.values))
            rows.append(Row(reading.record_id, item.asset_id.encode(), reading.encode()))
    return rows


def intake(body: bytes, max_rows: int, received_at: float) -> list[Row]:
    """The rows of ``body``, or an ``ApiError`` (400, 413, 422) naming what was wrong."""
    items = decode_body(body)
    check_rows(items, max_rows)
    return to_rows(items, received_at)


def body_schema() -> dict[str, Any]:
    """JSON schemas of ``FeedbackBody`` and the models it refers to, keyed by name (OpenAPI
    ``components/schemas``)."""
    schema = _BODY.json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "FeedbackBody": schema}
