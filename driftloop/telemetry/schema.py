"""Which columns of a telemetry table mean what.

Every telemetry source (the simulator, a user's CSV) is normalised to one long table: one row per asset
and event time, an ``asset_id`` column (string), an ``event_time`` column (unix seconds, float), the
target sensor column and the exogenous sensor columns that become features.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

ASSET_COL = "asset_id"
TIME_COL = "event_time"


class TelemetrySchema(BaseModel):
    """The target sensor and the exogenous sensors of a normalised telemetry table."""

    target_col: str = Field(description="sensor to forecast, e.g. bearing_temp_c")
    exogenous_cols: tuple[str, ...] = Field(description="other sensors used as features, in order")

    @property
    def columns(self) -> list[str]:
        return [ASSET_COL, TIME_COL, *self.exogenous_cols, self.target_col]


PUMP_SCHEMA = TelemetrySchema(
    target_col="bearing_temp_c",
    exogenous_cols=("load_pct", "speed_rpm", "ambient_c", "vibration_mm_s"),
)
