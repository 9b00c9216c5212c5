"""Request and response bodies of ``/v1/feedback``, and the one error body every answer >= 400 has.

A request body is one record or ``{"records": [...]}``. Which form a record has is decided by its
keys (``request_id``/``truth``/``row`` or ``asset_id``/``event_time``/``values``), so a wrong value is
reported at its documented path (``records[1].truth``), never as a list of union branches."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, Tag

MAX_ROW_INDEX = 2**31 - 1
MAX_READING_VALUES = 1_000
MAX_NAME_LENGTH = 256

# Union branches are tagged with names in angle brackets, which no field has: error paths drop them.
TAG_PREDICTION, TAG_ROWS = "<by-prediction>", "<rows-by-prediction>"
TAG_READING, TAG_BATCH = "<by-reading>", "<batch>"

_PREDICTION_KEYS = frozenset({"request_id", "truth", "row"})
_READING_KEYS = frozenset({"asset_id", "event_time", "values"})
RECORD_FORMS = (
    "a record is {request_id, truth: number, row} (one row of a logged prediction), {request_id, "
    "truth: [numbers]} (every row, in order) or {asset_id, event_time, values} (a reading)"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def _whole_number(value: Any) -> Any:
    """JSON Schema's integers include ``5.0``: take a float without a fractional part as an int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH)]
RowIndex = Annotated[int, Ge(0), Le(MAX_ROW_INDEX), BeforeValidator(_whole_number)]


class TruthByPrediction(_Strict):
    """Ground truth for one row of a logged prediction: its ``Seldon-Puid`` request id, the true value
    and the row (default 0)."""

    request_id: Name
    truth: float
    row: RowIndex | None = Field(None, description="which row of the request (default 0)")


class TruthRowsByPrediction(_Strict):
    """Ground truth for a logged prediction: its ``Seldon-Puid`` request id and the true value of each
    row, in row order."""

    request_id: Name
    truth: list[float] = Field(min_length=1, description="one true value per row, in row order")


class TruthByReading(_Strict):
    """A measured reading of an asset at an event time; labels the forecasts made for that time."""

    asset_id: Name
    event_time: float = Field(description="unix seconds")
    values: dict[Name, float] = Field(min_length=1, max_length=MAX_READING_VALUES)


def _record_form(value: Any) -> str | None:
    if not isinstance(value, dict):
        return None
    keys = value.keys()
    if keys & _PREDICTION_KEYS:
        return TAG_ROWS if isinstance(value.get("truth"), list) else TAG_PREDICTION
    if keys & _READING_KEYS:
        return TAG_READING
    return None


FeedbackItem = Annotated[
    Annotated[TruthByPrediction, Tag(TAG_PREDICTION)]
    | Annotated[TruthRowsByPrediction, Tag(TAG_ROWS)]
    | Annotated[TruthByReading, Tag(TAG_READING)],
    Discriminator(_record_form, custom_error_type="record_form", custom_error_message=RECORD_FORMS),
]


class FeedbackBatch(_Strict):
    records: list[FeedbackItem] = Field(min_length=1)


def _body_form(value: Any) -> str | None:
    if isinstance(value, dict) and "records" in value:
        return TAG_BATCH
    return _record_form(value)


FeedbackBody = Annotated[
    Annotated[FeedbackBatch, Tag(TAG_BATCH)]
    | Annotated[TruthByPrediction, Tag(TAG_PREDICTION)]
    | Annotated[TruthRowsByPrediction, Tag(TAG_ROWS)]
    | Annotated[TruthByReading, Tag(TAG_READING)],
    Discriminator(
        _body_form,
        custom_error_type="body_form",
        custom_error_message=f"the body is one record or {{'records': [...]}}; {RECORD_FORMS}",
    ),
]


class RecordStatus(BaseModel):
    record_id: str
    status: Literal["accepted", "duplicate"]


class FeedbackAccepted(BaseModel):
    accepted: int
    duplicates: int
    records: list[RecordStatus]


class FeedbackStats(BaseModel):
    accepted: int = Field(description="records (truth rows and readings) written")
    duplicates: int = Field(description="records not written again: this process had written them")
    rejected: int = Field(description="requests refused (any answer >= 400), all routes")
    refused: dict[str, int] = Field(description="requests refused, by HTTP status")
    batches: int = Field(description="requests accepted")
    topic: str


class Health(BaseModel):
    status: Literal["ok"]


class FieldError(BaseModel):
    field: str = Field(description="documented path of the value, e.g. records[1].truth; '' = the body")
    message: str


class ErrorBody(BaseModel):
    """Every answer >= 400 of the feedback API."""

    error: str = Field(description="what was wrong and what to do")
    code: str = Field(description="stable machine-readable reason, e.g. invalid_body, too_many_rows")
    fields: list[FieldError] = Field(default_factory=list, description="the values that were wrong")
