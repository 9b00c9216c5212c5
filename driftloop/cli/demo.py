"""``driftloop demo``: the main job on the embedded default, as a list of timed steps.

simulate -> train -> register -> the shipped SeldonDeployment on the local runtime -> a V2 call through
Seldon's ingress path -> ground truth through the feedback API -> labelled examples from the joiner ->
stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from driftloop.cli.demo_loop import LoopParts
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
    parts: LoopParts = field(default_factory=LoopParts)


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


def step_up(ctx: DemoContext) -> str:
    from driftloop.cli.demo_loop import start_local_runtime

    return start_local_runtime(ctx.parts, ctx.repository)


def step_predict(ctx: DemoContext) -> str:
    from driftloop.cli.demo_loop import predict_through_ingress

    return predict_through_ingress(ctx.parts, ctx.telemetry)


def step_feedback_api(ctx: DemoContext) -> str:
    from driftloop.cli.demo_loop import start_feedback_api

    return start_feedback_api(ctx.parts)


def step_truth(ctx: DemoContext) -> str:
    from driftloop.cli.demo_loop import send_ground_truth

    return send_ground_truth(ctx.parts)


def step_join(ctx: DemoContext) -> str:
    from driftloop.cli.demo_loop import join_labelled

    return join_labelled(ctx.parts)


def step_stop(ctx: DemoContext) -> str:
    ctx.parts.stop()
    return "local runtime, MLServers and feedback API stopped"


STEPS: list[tuple[str, Callable[[DemoContext], str]]] = [
    ("simulate pump telemetry", step_simulate),
    ("train forecaster + detector references", step_train),
    ("register in MLflow (alias champion)", step_register),
    ("run manifests/pump-bearing-temp.yaml on the local runtime", step_up),
    ("V2 call through the Seldon ingress: bearing-outlier -> bearing-temp", step_predict),
    ("start the feedback API", step_feedback_api),
    ("send the ground truth 30 min later, by Seldon-Puid", step_truth),
    ("join predictions with their truth (joiner)", step_join),
    ("stop", step_stop),
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
    """Run the loop on this machine: simulate -> train -> register -> run the shipped SeldonDeployment
    (manifests/pump-bearing-temp.yaml) on the local runtime -> a V2 call through Seldon's ingress path
    (logged in Seldon's Kafka format) -> ground truth through the feedback API -> the joiner labels the
    predictions -> stop. State goes to DRIFTLOOP_HOME (./.driftloop); the event log is the embedded one
    unless DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set."""
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
