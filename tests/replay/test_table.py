"""Checking a table before a replay starts: every bad-data error, task inference, the missing-value
policy, and the label delay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.replay.delay import LabelDelay
from driftloop.replay.errors import ReplayError
from driftloop.replay.table import ColumnOptions, prepare


def plant(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="1min").astype(str),
            "pump": ["p1", "p2"] * (n // 2),
            "bearing_temp": np.linspace(40.0, 50.0, n),
            "flow_rate": np.linspace(1.0, 2.0, n),
            "state": ["ok", "hot", "ok", "ok"] * (n // 4),
            "alarm_level": [0, 1, 2, 1] * (n // 4),
        }
    )


def test_a_misspelt_column_is_refused_with_the_closest_names() -> None:
    with pytest.raises(
        ReplayError, match=r"--target 'bearing_tmp' is not a column .* did you mean 'bearing_temp'"
    ):
        prepare(plant(), ColumnOptions(target="bearing_tmp"))
    with pytest.raises(ReplayError, match=r"--time 'timestmp' .* did you mean 'timestamp'"):
        prepare(plant(), ColumnOptions(target="bearing_temp", time="timestmp"))
    with pytest.raises(ReplayError, match=r"--features 'flow' .* did you mean 'flow_rate'"):
        prepare(plant(), ColumnOptions(target="bearing_temp", features=["flow"]))
    with pytest.raises(ReplayError, match=r"--asset 'zzz' is not a column .*: its columns are 'timestamp'"):
        prepare(plant(), ColumnOptions(target="bearing_temp", asset="zzz"))


def test_a_non_numeric_feature_is_refused_naming_row_and_value() -> None:
    with pytest.raises(ReplayError, match=r"feature 'state' is not numeric \(data row 1 holds 'ok'\)"):
        prepare(plant(), ColumnOptions(target="bearing_temp", features=["flow_rate", "state"]))


def test_non_numeric_columns_are_left_out_of_the_default_features_and_said() -> None:
    table = prepare(plant(), ColumnOptions(target="bearing_temp", time="timestamp"))
    assert table.features == ["flow_rate", "alarm_level"]
    assert table.ignored_columns == ["pump", "state"]


def test_a_target_with_nan_is_refused_naming_the_rows() -> None:
    frame = plant()
    frame.loc[[3, 7], "bearing_temp"] = np.nan
    with pytest.raises(ReplayError, match=r"target 'bearing_temp' is empty \(NaN\) in 2 row\(s\), .* 4, 8"):
        prepare(frame, ColumnOptions(target="bearing_temp"))


def test_time_going_back_is_refused_naming_the_row() -> None:
    frame = plant()
    frame.loc[5, "timestamp"] = "2025-12-31 00:00:00"
    with pytest.raises(
        ReplayError, match=r"'timestamp' goes back at data row 6 .* sort the file by 'timestamp'"
    ):
        prepare(frame, ColumnOptions(target="bearing_temp", time="timestamp"))


def test_equal_timestamps_are_allowed_and_times_are_seconds() -> None:
    frame = plant()
    frame["t"] = [0.0, 0.0, 60.0, 60.0] * 5
    frame["t"] = frame["t"] + np.repeat(np.arange(5) * 120.0, 4)
    table = prepare(frame, ColumnOptions(target="bearing_temp", time="t"))
    assert table.time is not None and table.time[:4].tolist() == [0.0, 0.0, 60.0, 60.0]
    parsed = prepare(plant(), ColumnOptions(target="bearing_temp", time="timestamp"))
    assert parsed.time is not None and np.diff(parsed.time).tolist() == [60.0] * 19


def test_a_single_class_is_refused() -> None:
    frame = plant()
    frame["state"] = "ok"
    with pytest.raises(ReplayError, match=r"'state' holds one class only \('ok'\)"):
        prepare(frame, ColumnOptions(target="state"))


@pytest.mark.parametrize(
    ("target", "task", "reason"),
    [
        ("state", "classification", "holds labels that are not numbers"),
        ("alarm_level", "classification", "holds 3 distinct integers"),
        ("bearing_temp", "regression", "holds numbers"),
    ],
)
def test_the_task_is_inferred_and_the_reason_said(target: str, task: str, reason: str) -> None:
    table = prepare(plant(), ColumnOptions(target=target))
    assert table.task == task
    assert reason in table.task_reason


def test_a_given_task_wins_and_a_text_target_cannot_be_regressed() -> None:
    table = prepare(plant(), ColumnOptions(target="alarm_level", task="regression"))
    assert (table.task, table.task_reason) == ("regression", "given with --task")
    with pytest.raises(ReplayError, match="--task regression needs a numeric target, but 'state' holds 'ok'"):
        prepare(plant(), ColumnOptions(target="state", task="regression"))


def test_missing_features_are_forward_filled_per_asset_and_leading_gaps_dropped_and_counted() -> None:
    frame = plant()
    frame.loc[0, "flow_rate"] = np.nan  # p1's first reading: nothing to fill from -> dropped
    frame.loc[3, "flow_rate"] = np.nan  # p2: filled from p2's row 1, not from p1's row 2
    table = prepare(frame, ColumnOptions(target="bearing_temp", asset="pump", features=["flow_rate"]))
    assert table.dropped == {"missing_features": 1}
    assert table.forward_filled == 1
    assert len(table) == 19
    assert table.X[2, 0] == frame.loc[1, "flow_rate"]  # row 3 of the file is row 2 after the drop
    frame["flow_rate"] = np.nan
    with pytest.raises(ReplayError, match="'flow_rate' hold no value at all"):
        prepare(frame, ColumnOptions(target="bearing_temp", features=["flow_rate"]))


@pytest.mark.parametrize(
    ("text", "rows", "seconds"),
    [("1", 1, None), ("12", 12, None), ("30s", None, 30.0), ("15min", None, 900.0), ("2h", None, 7200.0)],
)
def test_label_delay_parses_rows_or_durations(text: str, rows: int | None, seconds: float | None) -> None:
    delay = LabelDelay.parse(text)
    assert (delay.rows, delay.seconds) == (rows, seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "at the earliest one row after"),
        ("soon", "neither a row count nor a duration"),
        ("-5min", "positive"),
    ],
)
def test_a_bad_label_delay_is_refused(text: str, message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        LabelDelay.parse(text)


def test_a_duration_delay_reveals_each_label_once_time_has_moved_on_and_needs_time() -> None:
    time = np.array([0.0, 10.0, 20.0, 30.0, 100.0])
    assert LabelDelay.parse("20s").reveal_steps(5, time).tolist() == [2, 3, 4, 4, 5]
    assert LabelDelay.parse("2").reveal_steps(3, None).tolist() == [2, 3, 4]
    with pytest.raises(ReplayError, match="is a duration: pass --time COL"):
        LabelDelay.parse("20s").reveal_steps(5, None)
