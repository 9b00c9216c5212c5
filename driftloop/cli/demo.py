"""``driftloop demo``: the main job on the embedded default, as a list of timed steps.

simulate -> train -> register -> serve the model repository with MLServer -> one V2 call through the
outlier -> model chain (the way Seldon's executor calls it) -> stop. Later issues append steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from driftloop.cli.serve import server_env
from driftloop.cli.train import (
    CHAMPION,
    DEFAULT_REPOSITORY,
    print_published,
    print_training,
    quiet_third_party_logs,
)
from driftloop.errors import DriftloopError

if TYPE_CHECKING:  # heavy imports happen inside the steps: `driftloop --help` stays fast
    import pandas as pd


@dataclass
class DemoContext:
    """What the steps hand to each other."""

    assets: int
    days: float
    seed: int
    repository: Path
    telemetry: pd.DataFrame | None = None
    training: Any = None  # TrainingResult
    server: Any = None  # MLServerProcess
    answer: dict[str, Any] = field(default_factory=dict)


def step_simulate(ctx: DemoContext) -> str:
    from driftloop.telemetry import SimulatorSettings, simulate_fleet

    result = simulate_fleet(SimulatorSettings(assets=ctx.assets, days=ctx.days, seed=ctx.seed))
    ctx.telemetry = result.telemetry
    kinds = result.events_frame()["kind"].value_counts().to_dict()
    return f"{len(result.telemetry)} rows, {ctx.assets} pumps x {ctx.days:g} days; events {kinds}"


def step_train(ctx: DemoContext) -> str:
    from driftloop.learning.features import FeatureSpec
    from driftloop.learning.training import TrainingSettings, train

    assert ctx.telemetry is not None
    ctx.training = train(ctx.telemetry, FeatureSpec(), TrainingSettings(seed=ctx.seed))
    print_training(ctx.training)
    return f"MAE {ctx.training.metrics.mae:.3f} vs persistence {ctx.training.metrics.baseline_mae:.3f}"


def step_register(ctx: DemoContext) -> str:
    from driftloop.learning.registration import publish
    from driftloop.registry import MlflowRegistry

    registry = MlflowRegistry.from_state()
    published = publish(ctx.training, registry, alias=CHAMPION)
    print_published(published, CHAMPION)
    return f"registry {registry.tracking_uri}"


def step_serve(ctx: DemoContext) -> str:
    from driftloop.mlserver_process import MLServerProcess

    ctx.server = MLServerProcess(ctx.repository, env=server_env(), name="demo-mlserver").start()
    return f"MLServer ready at {ctx.server.url} (pid {ctx.server.pid})"


def step_call_graph(ctx: DemoContext) -> str:
    """The latest row of every pump through bearing-outlier -> bearing-temp, chained as Seldon does."""
    import httpx

    from driftloop.learning.features import FeatureSpec, build_features, latest_rows
    from driftloop.learning.v2_payload import as_next_node_request, features_request, output_values

    assert ctx.telemetry is not None and ctx.server is not None
    rows = latest_rows(build_features(ctx.telemetry, FeatureSpec(), require_label=False))
    body = features_request(
        rows.X, asset_ids=list(rows.asset_id), event_times=list(rows.event_time), request_id="driftloop-demo"
    )
    with httpx.Client(base_url=ctx.server.url, timeout=30.0) as client:
        outlier = client.post("/v2/models/bearing-outlier/infer", json=body)
        outlier.raise_for_status()
        model = client.post("/v2/models/bearing-temp/infer", json=as_next_node_request(outlier.json()))
        model.raise_for_status()
    answer = model.json()
    values = output_values(answer)
    now = rows.X[:, rows.feature_names.index("bearing_temp_c")]
    click.echo(f"  {'asset':<9} {'bearing now':>11} {'in 30 min':>10} {'outlier':>8} {'score':>7}")
    for i, asset in enumerate(rows.asset_id):
        click.echo(
            f"  {asset:<9} {now[i]:>9.2f} C {values['prediction'][i]:>8.2f} C "
            f"{'yes' if values['outlier_flag'][i] else 'no':>8} {values['outlier_score'][i]:>7.3f}"
        )
    ctx.answer = answer
    version, request_id = answer.get("model_version"), answer.get("id")
    return f"model {answer.get('model_name')} version {version}, request id {request_id}"


def step_stop(ctx: DemoContext) -> str:
    if ctx.server is not None:
        ctx.server.stop()
        ctx.server = None
    return "MLServer stopped"


STEPS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("simulate pump telemetry", step_simulate),
    ("train forecaster + detector references", step_train),
    ("register in MLflow (alias champion)", step_register),
    ("serve the model repository with MLServer", step_serve),
    ("V2 call: bearing-outlier -> bearing-temp", step_call_graph),
    ("stop MLServer", step_stop),
]


@click.command("demo")
@click.option("--assets", default=5, show_default=True, help="Simulated pumps.")
@click.option("--days", default=30.0, show_default=True, help="Simulated days.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.option(
    "--repository",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=DEFAULT_REPOSITORY,
    show_default=True,
    help="MLServer model repository.",
)
def demo(assets: int, days: float, seed: int, repository: Path) -> None:
    """Run the loop on this machine: simulate -> train -> register -> serve with MLServer on 127.0.0.1 ->
    one V2 call through the outlier -> model chain -> stop. State goes to DRIFTLOOP_HOME (./.driftloop)."""
    import httpx

    quiet_third_party_logs()
    ctx = DemoContext(assets=assets, days=days, seed=seed, repository=repository)
    total = time.perf_counter()
    try:
        for i, (title, run) in enumerate(STEPS, start=1):
            click.echo(f"[{i}/{len(STEPS)}] {title} ...")
            started = time.perf_counter()
            summary = run(ctx)
            click.echo(f"[{i}/{len(STEPS)}] {summary} ({time.perf_counter() - started:.2f}s)")
    except (DriftloopError, httpx.HTTPError) as exc:
        detail = exc.response.text if isinstance(exc, httpx.HTTPStatusError) else ""
        raise click.ClickException(f"{type(exc).__name__}: {exc} {detail}") from None
    finally:
        step_stop(ctx)
    click.echo(f"demo done in {time.perf_counter() - total:.1f}s")
