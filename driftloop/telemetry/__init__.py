"""Telemetry sources: the built-in pump-fleet simulator and a user's CSV/Parquet file."""

from driftloop.telemetry.csv_source import TelemetryFileError, load_telemetry, normalise
from driftloop.telemetry.schema import ASSET_COL, PUMP_SCHEMA, TIME_COL, TelemetrySchema
from driftloop.telemetry.simulator import FleetEvent, SimulationResult, SimulatorSettings, simulate_fleet

__all__ = [
    "ASSET_COL",
    "PUMP_SCHEMA",
    "TIME_COL",
    "FleetEvent",
    "SimulationResult",
    "SimulatorSettings",
    "TelemetryFileError",
    "TelemetrySchema",
    "load_telemetry",
    "normalise",
    "simulate_fleet",
]
