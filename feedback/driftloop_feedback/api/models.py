"""Request and response bodies of ``/v1/feedback``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TruthByPrediction(_Strict):
    """Ground truth for a logged prediction: its ``Seldon-Puid`` request id and the true value of each
    row (a list, in row order), or of one row (``truth`` + ``row``)."""

    request_id: str = Field(min_length=1, max_length=256)
    truth: float | list[float]
    row: int | None = Field(None, ge=0, description="with a scalar truth: which row (default 0)")

    @field_validator("truth")
    @classmethod
    def _non_empty(cls, value: float | list[float]) -> float | list[float]:
        if isinstance(value, list) and not value:
            raise ValueError("truth list is empty; give one value per row of the request")
        return value


class TruthByReading(_Strict):
    """A measured reading of an asset at an event time; labels the forecasts made for that time."""

    asset_id: str = Field(min_length=1, max_length=256)
    event_time: float = Field(description="unix seconds")
    values: dict[str, float] = Field(min_length=1)


FeedbackItem = TruthByPrediction | TruthByReading


class FeedbackBatch(_Strict):
    records: list[FeedbackItem] = Field(min_length=1)


class RecordStatus(BaseModel):
    record_id: str
    status: Literal["accepted", "duplicate"]


class FeedbackAccepted(BaseModel):
    accepted: int
    duplicates: int
    records: list[RecordStatus]


class FeedbackStats(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    batches: int
    topic: str


class Health(BaseModel):
    status: Literal["ok"]
