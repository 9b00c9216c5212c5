"""``driftloop train``: features -> incremental forecaster + outlier/drift references -> MLflow registry."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from driftloop.cli.data import csv_options, load_source, simulator_options
from driftloop.errors import DriftloopError

if TYPE_CHECKING:  # scikit-learn, pandas and MLflow load only when a command runs
    from driftloop.learning.registration import PublishedVersions
    from driftloop.learning.training import TrainingResult, TrainingSettings

CHAMPION = "champion"  # driftloop.learning.registration.CHAMPION

DEFAULT_REPOSITORY = Path("models")  # the checkout's model repository, from the working directory


def quiet_third_party_logs() -> None:
    """Keep the CLI's output to driftloop's progress: alibi-detect warns that detectors it never
    thresholds have no threshold (driftloop sets its own), transformers (imported by alibi-detect) says
    it has no deep-learning backend, MLflow warns about the pickle format driftloop chooses on purpose
    (mlserver-sklearn cannot read skops)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("alibi_detect", "mlflow.sklearn", "mlflow.utils.environment", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


def echo_step(message: str) -> None:
    click.echo(f"[driftloop] {message}", err=False)


def print_training(result: TrainingResult) -> None:
    m = result.metrics
    echo_step(
        f"trained on {m.n_train} rows, validated on the latest {m.n_validation} "
        f"({m.dropped_missing} rows without features/label dropped)"
    )
    echo_step(
        f"validation MAE {m.mae:.3f} / RMSE {m.rmse:.3f} vs persistence MAE {m.baseline_mae:.3f} / "
        f"RMSE {m.baseline_rmse:.3f} (skill {m.skill:+.1%})"
    )
    echo_step(f"feature_names: {json.dumps(result.feature_names)}")


def check_repository_features(feature_names: list[str], repository: Path) -> str | None:
    """A warning when the served model's settings list other features than the model was trained on."""
    settings_file = repository / "bearing-temp" / "model-settings.json"
    if not settings_file.is_file():
        return None
    extra = json.loads(settings_file.read_text()).get("parameters", {}).get("extra", {})
    if extra.get("feature_names") != feature_names:
        return (
            f"{settings_file} lists feature_names {extra.get('feature_names')}, the model was trained on "
            f"{feature_names}: set them in parameters.extra.feature_names of the model and both detectors"
        )
    return None


def print_published(published: PublishedVersions, alias: str | None) -> None:
    at = f" @{alias}" if alias else ""
    for ref in (published.model, published.outlier, published.drift):
        echo_step(f"registered {ref.name} version {ref.version}{at}")


@click.command("train")
@csv_options
@simulator_options
@click.option("--horizon-s", default=1800.0, show_default=True, help="Forecast horizon in seconds.")
@click.option("--lag-s", default=900.0, show_default=True, help="Lag of the lagged-target feature.")
@click.option("--epochs", default=10, show_default=True, help="SGD passes over the training rows.")
@click.option("--outlier-kind", default="alibi-mahalanobis", show_default=True, help="Outlier detector kind.")
@click.option("--drift-kind", default="alibi-ks", show_default=True, help="Drift detector kind.")
@click.option("--register/--no-register", default=True, show_default=True, help="Register in MLflow.")
@click.option("--alias", default=CHAMPION, show_default=True, help="Alias of the new versions ('' = none).")
def train(
    csv_path: Path | None,
    time_col: str,
    asset_col: str,
    target_col: str,
    feature_cols: tuple[str, ...],
    assets: int,
    days: float,
    seed: int,
    horizon_s: float,
    lag_s: float,
    epochs: int,
    outlier_kind: str,
    drift_kind: str,
    register: bool,
    alias: str,
) -> None:
    """Train the bearing-temperature forecaster and fit its outlier and drift references, then register
    all three in MLflow (pump-bearing-temp, -outlier, -drift) under --alias.

    Data: the built-in simulator (--assets/--days/--seed), or your file with --csv and the column mapping
    (--time-col, --asset-col, --target-col, --feature-col). The registry is MLflow at
    DRIFTLOOP_MLFLOW_TRACKING_URI, default sqlite under DRIFTLOOP_HOME (./.driftloop).
    """
    from driftloop.learning.training import TrainingSettings

    quiet_third_party_logs()
    try:
        result = run_training(
            csv_path=csv_path,
            time_col=time_col,
            asset_col=asset_col,
            target_col=target_col,
            feature_cols=feature_cols,
            assets=assets,
            days=days,
            seed=seed,
            spec_horizon_s=horizon_s,
            lag_s=lag_s,
            settings=TrainingSettings(
                seed=seed, epochs=epochs, outlier_kind=outlier_kind, drift_kind=drift_kind
            ),
        )
        if register:
            run_registration(result, alias or None)
    except (DriftloopError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def run_training(
    *,
    csv_path: Path | None,
    time_col: str,
    asset_col: str,
    target_col: str,
    feature_cols: tuple[str, ...],
    assets: int,
    days: float,
    seed: int,
    spec_horizon_s: float,
    lag_s: float,
    settings: TrainingSettings,
) -> TrainingResult:
    from driftloop.learning.features import FeatureSpec
    from driftloop.learning.training import train as train_model

    started = time.perf_counter()
    table, schema = load_source(
        csv_path=csv_path,
        time_col=time_col,
        asset_col=asset_col,
        target_col=target_col,
        feature_cols=feature_cols,
        assets=assets,
        days=days,
        seed=seed,
    )
    source = str(csv_path) if csv_path else f"simulator ({assets} pumps x {days:g} days, seed {seed})"
    echo_step(f"loaded {len(table)} telemetry rows from {source} in {time.perf_counter() - started:.2f}s")
    started = time.perf_counter()
    spec = FeatureSpec(schema=schema, horizon_s=spec_horizon_s, lag_s=lag_s)
    result = train_model(table, spec, settings)
    echo_step(f"trained forecaster and fitted detectors in {time.perf_counter() - started:.2f}s")
    print_training(result)
    warning = check_repository_features(result.feature_names, DEFAULT_REPOSITORY)
    if warning:
        echo_step(f"warning: {warning}")
    return result


def run_registration(result: TrainingResult, alias: str | None) -> PublishedVersions:
    from driftloop.learning.registration import publish
    from driftloop.registry import MlflowRegistry

    started = time.perf_counter()
    registry = MlflowRegistry.from_state()
    published = publish(result, registry, alias=alias)
    echo_step(f"registered in {registry.tracking_uri} in {time.perf_counter() - started:.2f}s")
    print_published(published, alias)
    return published
