"""Read a user's telemetry file (CSV or Parquet) into the normalised telemetry table.

The user names which column holds the event time, the asset and the target sensor; the exogenous
sensors are the columns they list, or else every other numeric column. Columns that start with the
target's name (e.g. a ground-truth column ``bearing_temp_c_in_1800s`` written by ``driftloop
simulate``) are never used as features: they would leak the future.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from driftloop.errors import ConfigurationError
from driftloop.telemetry.schema import ASSET_COL, TIME_COL, TelemetrySchema


class TelemetryFileError(ConfigurationError):
    """The telemetry file cannot be read as asked; the message names the file and column."""


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TelemetryFileError(f"telemetry file {path} does not exist: pass an existing CSV or Parquet")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise TelemetryFileError(f"cannot read {path} as CSV/Parquet: {exc}") from exc


def load_telemetry(
    path: Path,
    *,
    time_col: str = TIME_COL,
    asset_col: str | None = ASSET_COL,
    target_col: str,
    feature_cols: Sequence[str] = (),
) -> tuple[pd.DataFrame, TelemetrySchema]:
    """Read ``path`` and return the normalised table and its schema.

    ``time_col`` may hold unix seconds or any timestamp pandas parses; ``asset_col=None`` means one
    asset (named ``asset-1``).
    """
    raw = read_table(path)
    return normalise(
        raw,
        time_col=time_col,
        asset_col=asset_col,
        target_col=target_col,
        feature_cols=feature_cols,
        source=str(path),
    )


def normalise(
    raw: pd.DataFrame,
    *,
    time_col: str,
    asset_col: str | None,
    target_col: str,
    feature_cols: Sequence[str] = (),
    source: str = "table",
) -> tuple[pd.DataFrame, TelemetrySchema]:
    wanted = [time_col, target_col, *feature_cols, *([asset_col] if asset_col else [])]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise TelemetryFileError(
            f"{source} has no column(s) {missing}; its columns are {list(raw.columns)}. "
            "Name the right ones with --time-col/--asset-col/--target-col/--feature-col."
        )
    if not feature_cols:
        skip = {time_col, target_col, asset_col}
        feature_cols = [
            c
            for c in raw.columns
            if c not in skip
            and not str(c).startswith(target_col)
            and pd.api.types.is_numeric_dtype(raw[c])
            and not pd.api.types.is_bool_dtype(raw[c])
        ]
    for col in [target_col, *feature_cols]:
        if not pd.api.types.is_numeric_dtype(raw[col]):
            raise TelemetryFileError(f"column {col!r} of {source} is not numeric (dtype {raw[col].dtype})")

    table = pd.DataFrame(
        {
            ASSET_COL: raw[asset_col].astype(str) if asset_col else "asset-1",
            TIME_COL: _unix_seconds(raw[time_col], time_col, source),
        }
    )
    for col in [*feature_cols, target_col]:
        table[col] = raw[col].astype(float)
    duplicated = table.duplicated([ASSET_COL, TIME_COL]).sum()
    if duplicated:
        raise TelemetryFileError(
            f"{source} has {duplicated} duplicate ({asset_col or 'asset'}, {time_col}) rows: "
            "each asset may report once per event time"
        )
    table = table.sort_values([TIME_COL, ASSET_COL], kind="stable").reset_index(drop=True)
    return table, TelemetrySchema(target_col=target_col, exogenous_cols=tuple(feature_cols))


def _unix_seconds(column: pd.Series, name: str, source: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column):
        values = column.astype(float)
    else:
        try:
            try:
                parsed = pd.to_datetime(column, utc=True, format="ISO8601")
            except ValueError:
                parsed = pd.to_datetime(column, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise TelemetryFileError(
                f"time column {name!r} of {source} is neither unix seconds nor a timestamp: {exc}"
            ) from exc
        values = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    if not np.isfinite(values.to_numpy()).all():
        raise TelemetryFileError(f"time column {name!r} of {source} has empty or non-finite values")
    return values
