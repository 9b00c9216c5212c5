"""``driftloop simulate``: write pump-fleet telemetry with its ground truth; and the telemetry-source
options (``--csv`` + column mapping, or the simulator) shared by ``train`` and ``demo``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from driftloop.errors import DriftloopError

if TYPE_CHECKING:  # pandas and the simulator load only when a command runs: `driftloop --help` stays fast
    import pandas as pd

    from driftloop.telemetry import TelemetrySchema

DEFAULT_TARGET = "bearing_temp_c"  # driftloop.telemetry.PUMP_SCHEMA.target_col

F = TypeVar("F", bound=Callable[..., Any])


def write_table(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".parquet", ".pq"}:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def simulator_options(func: F) -> F:
    for option in reversed(
        [
            click.option("--assets", default=5, show_default=True, help="Number of simulated pumps."),
            click.option(
                "--days", default=30.0, show_default=True, help="Simulated days of 5-minute telemetry."
            ),
            click.option("--seed", default=0, show_default=True, help="Random seed: same seed, same data."),
        ]
    ):
        func = option(func)
    return func


def csv_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--csv",
                "csv_path",
                type=click.Path(path_type=Path, dir_okay=False),
                help="Your telemetry (CSV or Parquet) instead of the simulator.",
            ),
            click.option("--time-col", default="event_time", show_default=True, help="Event-time column."),
            click.option(
                "--asset-col", default="asset_id", show_default=True, help="Asset column ('' = one)."
            ),
            click.option(
                "--target-col", default=DEFAULT_TARGET, show_default=True, help="Sensor to forecast."
            ),
            click.option(
                "--feature-col",
                "feature_cols",
                multiple=True,
                help="Exogenous sensor column (repeat); default: every other numeric column.",
            ),
        ]
    ):
        func = option(func)
    return func


def load_source(
    *,
    csv_path: Path | None,
    time_col: str,
    asset_col: str,
    target_col: str,
    feature_cols: tuple[str, ...],
    assets: int,
    days: float,
    seed: int,
) -> tuple[pd.DataFrame, TelemetrySchema]:
    """The user's file when ``csv_path`` is given, else a fresh simulation."""
    from driftloop.telemetry import PUMP_SCHEMA, SimulatorSettings, load_telemetry, simulate_fleet

    if csv_path is not None:
        return load_telemetry(
            csv_path,
            time_col=time_col,
            asset_col=asset_col or None,
            target_col=target_col,
            feature_cols=feature_cols,
        )
    result = simulate_fleet(SimulatorSettings(assets=assets, days=days, seed=seed))
    return result.telemetry, PUMP_SCHEMA


@click.command("simulate")
@simulator_options
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("telemetry.csv"),
    show_default=True,
    help="Output file; .parquet writes Parquet, anything else CSV.",
)
@click.option("--horizon-s", default=1800.0, show_default=True, help="Ground-truth horizon in seconds.")
@click.option("--events-out", type=click.Path(path_type=Path, dir_okay=False), help="Also write the events.")
def simulate(
    assets: int, days: float, seed: int, out: Path, horizon_s: float, events_out: Path | None
) -> None:
    """Simulate pump-fleet telemetry: load, speed, ambient, vibration and bearing temperature every 5 minutes,
    with daily cycles, sensor faults, bearing wear and regime changes.

    The file holds one row per pump and time plus the ground truth column
    bearing_temp_c_in_<horizon>s (the bearing temperature the pump reports horizon seconds later).
    Train on it with `driftloop train --csv <file>`.
    """
    from driftloop.learning.features import FeatureSpec, with_labels
    from driftloop.telemetry import SimulatorSettings, simulate_fleet

    started = time.perf_counter()
    try:
        result = simulate_fleet(SimulatorSettings(assets=assets, days=days, seed=seed))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    table = with_labels(result.telemetry, FeatureSpec(horizon_s=horizon_s))
    try:
        write_table(table, out)
        if events_out is not None:
            write_table(result.events_frame(), events_out)
    except (OSError, DriftloopError) as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from None
    kinds = result.events_frame()["kind"].value_counts().to_dict()
    click.echo(
        f"wrote {len(table)} rows ({assets} pumps x {days:g} days) to {out} in "
        f"{time.perf_counter() - started:.2f}s; events: {kinds}"
    )
