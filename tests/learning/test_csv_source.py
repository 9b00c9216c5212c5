"""A user's CSV: column mapping, timestamps, and errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from driftloop.telemetry import TelemetryFileError, load_telemetry


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "plant.csv") -> Path:
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def plant() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ts": ["2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", "2026-01-01T00:00:00Z"],
            "machine": ["m1", "m1", "m2"],
            "flow": [1.0, 2.0, 3.0],
            "label_text": ["x", "y", "z"],
            "winding_c": [50.0, 51.0, 60.0],
            "winding_c_in_1800s": [52.0, 53.0, 61.0],
        }
    )


def test_mapping_timestamps_and_default_features(tmp_path: Path) -> None:
    table, schema = load_telemetry(
        write(tmp_path, plant()), time_col="ts", asset_col="machine", target_col="winding_c"
    )
    assert list(table.columns) == ["asset_id", "event_time", "flow", "winding_c"]
    assert schema.exogenous_cols == ("flow",)  # text and the target's ground-truth column are left out
    assert table["event_time"].tolist() == [1767225600.0, 1767225600.0, 1767225900.0]
    assert table["asset_id"].tolist() == ["m1", "m2", "m1"]


def test_parquet_and_single_asset(tmp_path: Path) -> None:
    frame = plant().drop(columns=["machine"]).iloc[:2]
    table, _ = load_telemetry(
        write(tmp_path, frame, "plant.parquet"),
        time_col="ts",
        asset_col=None,
        target_col="winding_c",
        feature_cols=["flow"],
    )
    assert table["asset_id"].unique().tolist() == ["asset-1"]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match=r"no column\(s\) \['when', 'bearing'\].*--time-col"):
        load_telemetry(write(tmp_path, plant()), time_col="when", asset_col="machine", target_col="bearing")


def test_non_numeric_feature_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match=r"'label_text' .* not numeric"):
        load_telemetry(
            write(tmp_path, plant()),
            time_col="ts",
            asset_col="machine",
            target_col="winding_c",
            feature_cols=["label_text"],
        )


def test_duplicate_rows_and_bad_times_are_refused(tmp_path: Path) -> None:
    duplicated = pd.concat([plant(), plant().iloc[:1]])
    with pytest.raises(TelemetryFileError, match="1 duplicate"):
        load_telemetry(
            write(tmp_path, duplicated), time_col="ts", asset_col="machine", target_col="winding_c"
        )
    bad = plant().assign(ts=["yesterday", "today", "tomorrow"])
    with pytest.raises(TelemetryFileError, match="neither unix seconds nor a timestamp"):
        load_telemetry(
            write(tmp_path, bad, "bad.csv"), time_col="ts", asset_col="machine", target_col="winding_c"
        )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TelemetryFileError, match="does not exist"):
        load_telemetry(tmp_path / "nope.csv", target_col="t")
