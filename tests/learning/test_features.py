"""Feature construction: order, lags and labels matched by time per asset, missing rows counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.learning.features import FeatureSpec, build_features, latest_rows, with_labels
from driftloop.telemetry import TelemetrySchema

SCHEMA = TelemetrySchema(target_col="temp", exogenous_cols=("load",))


def two_assets() -> pd.DataFrame:
    rows = []
    for asset, offset in (("a", 0.0), ("b", 100.0)):
        for k in range(10):
            rows.append({"asset_id": asset, "event_time": 300.0 * k, "load": float(k), "temp": offset + k})
    return pd.DataFrame(rows).sort_values(["event_time", "asset_id"]).reset_index(drop=True)


def test_labels_and_lags_come_from_the_same_asset() -> None:
    spec = FeatureSpec(schema=SCHEMA, horizon_s=600, lag_s=300)
    ft = build_features(two_assets(), spec)
    assert ft.feature_names == ["load", "temp", "temp_lag_300s", "hour_sin", "hour_cos"]
    for asset, offset in (("a", 0.0), ("b", 100.0)):
        mine = ft.asset_id == asset
        k = ft.event_time[mine] / 300.0
        np.testing.assert_allclose(ft.X[mine, 1], offset + k)
        np.testing.assert_allclose(ft.X[mine, 2], offset + k - 1)
        np.testing.assert_allclose(ft.y[mine], offset + k + 2)
    assert ft.dropped_missing == 2 * (1 + 2)  # per asset: no lag for the first row, no label for the last two


def test_a_dropout_drops_the_rows_that_need_it() -> None:
    table = two_assets()
    table.loc[(table["asset_id"] == "a") & (table["event_time"] == 1500.0), "temp"] = np.nan
    ft = build_features(table, FeatureSpec(schema=SCHEMA, horizon_s=600, lag_s=300))
    times_a = ft.event_time[ft.asset_id == "a"].tolist()
    # t=1500 lacks its own value, t=1800 its lag, t=900 its label
    assert 1500.0 not in times_a and 1800.0 not in times_a and 900.0 not in times_a
    assert ft.dropped_missing == 6 + 3


def test_serving_rows_keep_the_latest_rows_without_labels() -> None:
    spec = FeatureSpec(schema=SCHEMA, horizon_s=600, lag_s=300)
    latest = latest_rows(build_features(two_assets(), spec, require_label=False))
    assert latest.asset_id.tolist() == ["a", "b"]
    assert latest.event_time.tolist() == [2700.0, 2700.0]
    assert np.isnan(latest.y).all()


def test_hour_features_encode_the_time_of_day() -> None:
    ft = build_features(two_assets(), FeatureSpec(schema=SCHEMA, horizon_s=300, lag_s=300))
    angle = np.arctan2(ft.X[:, 3], ft.X[:, 4]) % (2 * np.pi)
    np.testing.assert_allclose(angle, 2 * np.pi * ft.event_time / 86400.0, atol=1e-9)


def test_with_labels_adds_the_ground_truth_column() -> None:
    labelled = with_labels(two_assets(), FeatureSpec(schema=SCHEMA, horizon_s=900, lag_s=300))
    row = labelled[(labelled["asset_id"] == "b") & (labelled["event_time"] == 0.0)]
    assert row["temp_in_900s"].item() == pytest.approx(103.0)
    assert labelled["temp_in_900s"].isna().sum() == 2 * 3
