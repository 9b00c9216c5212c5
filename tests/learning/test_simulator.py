"""The pump-fleet simulator: reproducible, physically sensible, and carrying the faults it reports."""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftloop.telemetry import PUMP_SCHEMA, SimulatorSettings, simulate_fleet

SMALL = SimulatorSettings(assets=3, days=4, seed=11)


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = simulate_fleet(SMALL)
    again = simulate_fleet(SMALL)
    other = simulate_fleet(SMALL.model_copy(update={"seed": 12}))
    pd.testing.assert_frame_equal(first.telemetry, again.telemetry)
    assert first.events == again.events
    assert not first.telemetry[PUMP_SCHEMA.target_col].equals(other.telemetry[PUMP_SCHEMA.target_col])


def test_table_shape_columns_and_order() -> None:
    table = simulate_fleet(SMALL).telemetry
    assert list(table.columns) == PUMP_SCHEMA.columns
    assert len(table) == 3 * 4 * 288
    assert sorted(table["asset_id"].unique()) == ["pump-01", "pump-02", "pump-03"]
    assert table["event_time"].is_monotonic_increasing
    steps = table[table["asset_id"] == "pump-01"]["event_time"].diff().dropna().unique()
    assert steps.tolist() == [300.0]


def test_bearing_runs_above_ambient_and_follows_load() -> None:
    quiet = SimulatorSettings(
        assets=4,
        days=6,
        seed=3,
        spikes_per_day=0,
        stuck_per_day=0,
        dropouts_per_day=0,
        wear_probability=0,
        regime_changes_per_asset=0,
    )
    table = simulate_fleet(quiet).telemetry
    assert (table["bearing_temp_c"] > table["ambient_c"]).all()
    assert table[["load_pct", "speed_rpm"]].corr().iloc[0, 1] > 0.9
    rise = table["bearing_temp_c"] - table["ambient_c"]
    assert np.corrcoef(rise, table["load_pct"])[0, 1] > 0.5


def test_thermal_lag_smooths_the_bearing_against_its_drivers() -> None:
    quiet = SimulatorSettings(assets=1, days=3, seed=5, spikes_per_day=0, stuck_per_day=0, dropouts_per_day=0)
    table = simulate_fleet(quiet).telemetry
    # with a 40-minute time constant, 5-minute changes of the bearing are small next to its daily swing
    step = table["bearing_temp_c"].diff().abs().median()
    swing = table["bearing_temp_c"].max() - table["bearing_temp_c"].min()
    assert step < swing / 50


def test_wear_heats_and_shakes_the_worn_pump() -> None:
    settings = SimulatorSettings(
        assets=2,
        days=40,
        seed=8,
        wear_probability=1.0,
        regime_changes_per_asset=0,
        spikes_per_day=0,
        stuck_per_day=0,
        dropouts_per_day=0,
    )
    result = simulate_fleet(settings)
    onsets = [e for e in result.events if e.kind == "wear_onset"]
    assert len(onsets) == 2
    pump = result.telemetry[result.telemetry["asset_id"] == onsets[0].asset_id]
    first_week = pump[pump["event_time"] < pump["event_time"].min() + 7 * 86400]
    last_week = pump[pump["event_time"] > pump["event_time"].max() - 7 * 86400]
    heat = lambda part: (part["bearing_temp_c"] - part["ambient_c"]).mean()  # noqa: E731
    assert heat(last_week) > heat(first_week) + 1.0
    assert last_week["vibration_mm_s"].mean() > first_week["vibration_mm_s"].mean() * 1.1


def test_sensor_faults_are_in_the_data_and_in_the_events() -> None:
    settings = SimulatorSettings(
        assets=2, days=10, seed=2, spikes_per_day=2, stuck_per_day=0.3, dropouts_per_day=0.5
    )
    result = simulate_fleet(settings)
    kinds = result.events_frame()["kind"].value_counts()
    assert kinds["spike"] > 10 and kinds["dropout"] > 0 and kinds["stuck"] > 0
    temp = result.telemetry.pivot(index="event_time", columns="asset_id", values="bearing_temp_c")
    assert temp.isna().to_numpy().sum() > 0
    jumps = temp.diff().abs()
    assert (jumps > 12).to_numpy().sum() >= kinds["spike"]  # every spike jumps up and back down
