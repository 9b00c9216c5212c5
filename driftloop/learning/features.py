"""Feature construction for the h-ahead forecast, shared by training and every client of the model.

Features, in this order (the order goes into the model's ``feature_names`` setting):
the exogenous sensors (e.g. load, speed, ambient, vibration), the target sensor now, the target sensor
``lag_s`` ago, and the time of day as sine/cosine (load and ambient follow daily cycles). The label is
the target sensor as the asset reports it ``horizon_s`` after the row's event time.

Rows whose features or label are missing (sensor dropouts, the last ``horizon_s`` of each asset) are
dropped and counted in :class:`FeatureTable`.

>>> import pandas as pd
>>> from driftloop.telemetry import TelemetrySchema
>>> table = pd.DataFrame({"asset_id": ["a"] * 8, "event_time": [300.0 * k for k in range(8)],
...                       "load": [1.0] * 8, "temp": [float(k) for k in range(8)]})
>>> spec = FeatureSpec(schema=TelemetrySchema(target_col="temp", exogenous_cols=("load",)),
...                    horizon_s=600, lag_s=300)
>>> ft = build_features(table, spec)
>>> ft.feature_names
['load', 'temp', 'temp_lag_300s', 'hour_sin', 'hour_cos']
>>> ft.y.tolist()  # temp 600 s later
[3.0, 4.0, 5.0, 6.0, 7.0]
>>> ft.dropped_missing
3
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from driftloop.telemetry.schema import ASSET_COL, PUMP_SCHEMA, TIME_COL, TelemetrySchema

DAY_S = 86_400.0


class FeatureSpec(BaseModel):
    """How telemetry becomes features and labels."""

    schema_: TelemetrySchema = Field(default=PUMP_SCHEMA, alias="schema")
    horizon_s: float = Field(default=1800.0, gt=0, description="forecast horizon in seconds")
    lag_s: float = Field(default=900.0, gt=0, description="how far back the lagged target looks")
    tolerance_s: float = Field(default=1.0, ge=0, description="time matching tolerance for lag/label")

    model_config = {"populate_by_name": True}

    @property
    def lag_name(self) -> str:
        return f"{self.schema_.target_col}_lag_{self.lag_s:g}s"

    @property
    def label_name(self) -> str:
        return f"{self.schema_.target_col}_in_{self.horizon_s:g}s"

    @property
    def feature_names(self) -> list[str]:
        target = self.schema_.target_col
        return [*self.schema_.exogenous_cols, target, self.lag_name, "hour_sin", "hour_cos"]


@dataclass(frozen=True)
class FeatureTable:
    """Model-ready rows: X [N, F] in ``feature_names`` order, y [N], and where each row came from."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    asset_id: np.ndarray
    event_time: np.ndarray
    dropped_missing: int

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, mask: np.ndarray) -> FeatureTable:
        return FeatureTable(
            self.X[mask], self.y[mask], self.feature_names, self.asset_id[mask], self.event_time[mask], 0
        )


def _value_at_offset(table: pd.DataFrame, column: str, offset_s: float, tolerance_s: float) -> np.ndarray:
    """For each row, ``column`` of the same asset at ``event_time + offset_s`` (NaN when absent)."""
    left = table[[ASSET_COL, TIME_COL]].copy()
    left["_row"] = np.arange(len(left))
    left["_when"] = left[TIME_COL] + offset_s
    right = table[[ASSET_COL, TIME_COL, column]].rename(columns={TIME_COL: "_when", column: "_value"})
    merged = pd.merge_asof(
        left.sort_values("_when"),
        right.dropna(subset=["_value"]).sort_values("_when"),
        on="_when",
        by=ASSET_COL,
        direction="nearest",
        tolerance=tolerance_s,
    )
    values = np.full(len(table), np.nan)
    values[merged["_row"].to_numpy()] = merged["_value"].to_numpy(dtype=float)
    return values


def hour_of_day_features(event_time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    phase = 2 * np.pi * (np.asarray(event_time, dtype=float) % DAY_S) / DAY_S
    return np.sin(phase), np.cos(phase)


def build_features(table: pd.DataFrame, spec: FeatureSpec, *, require_label: bool = True) -> FeatureTable:
    """Features and h-ahead labels for every row of a normalised telemetry table that has both; with
    ``require_label=False`` (serving the latest rows) every row with features, label NaN when unknown."""
    target = spec.schema_.target_col
    columns = {c: table[c].to_numpy(dtype=float) for c in (*spec.schema_.exogenous_cols, target)}
    lagged = _value_at_offset(table, target, -spec.lag_s, spec.tolerance_s)
    label = _value_at_offset(table, target, spec.horizon_s, spec.tolerance_s)
    hour_sin, hour_cos = hour_of_day_features(table[TIME_COL].to_numpy())
    X = np.column_stack([*columns.values(), lagged, hour_sin, hour_cos])
    keep = np.isfinite(X).all(axis=1) & (np.isfinite(label) | (not require_label))
    return FeatureTable(
        X=X[keep],
        y=label[keep],
        feature_names=spec.feature_names,
        asset_id=table[ASSET_COL].to_numpy(dtype=object)[keep],
        event_time=table[TIME_COL].to_numpy(dtype=float)[keep],
        dropped_missing=int((~keep).sum()),
    )


def latest_rows(features: FeatureTable) -> FeatureTable:
    """The most recent row of every asset."""
    order = pd.DataFrame({"asset": features.asset_id, "t": features.event_time})
    latest = order.groupby("asset", sort=True)["t"].idxmax().to_numpy()
    return features.select(np.isin(np.arange(len(features)), latest))


def with_labels(table: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The telemetry table plus its ground-truth column (the target ``horizon_s`` later)."""
    out = table.copy()
    out[spec.label_name] = _value_at_offset(table, spec.schema_.target_col, spec.horizon_s, spec.tolerance_s)
    return out
