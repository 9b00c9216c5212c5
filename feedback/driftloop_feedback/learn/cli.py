"""``driftloop trainer run``: the trainer worker as a process."""

from __future__ import annotations

import click

from driftloop_feedback.worker_cli import (
    configure_logging,
    load_settings,
    metrics_port_option,
    serve_metrics,
    starting,
    stop_check,
    stop_on_signals,
)


@click.group()
def trainer() -> None:
    """Learn labelled examples into a challenger and register candidates in MLflow."""


@trainer.command()
@metrics_port_option
@click.option("--progress-s", type=float, default=10.0, show_default=True, help="progress line interval")
def run(metrics_port: int | None, progress_s: float) -> None:
    """Run the trainer: read driftloop.labelled exactly once, learn with partial_fit starting from
    models:/<name>@champion, cut candidates (drift event, champion degradation, schedule), register
    each as a new version with alias challenger. Waits (and says so) while no champion is registered
    or no labelled topic exists; retries registration while MLflow is unreachable; never promotes.
    Settings: DRIFTLOOP_TRAINER_* (docs/trainer.md). SIGTERM/SIGINT stop it after a final checkpoint."""
    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.learn.settings import TrainerSettings
    from driftloop_feedback.learn.worker import TrainerWorker

    configure_logging()
    settings = load_settings(TrainerSettings)
    stop = stop_on_signals()
    log = open_event_log()
    with starting(log):
        worker = TrainerWorker(log, MlflowRegistry.from_state(), settings)
    serve_metrics("trainer", metrics_port, worker.metrics.registry)
    click.echo(f"trainer ready ({settings.model_name}, topic {settings.labelled_topic})")
    should_stop = stop_check(stop, progress_s, lambda: _progress(worker))
    try:
        worker.run(should_stop)
    finally:
        log.close()
    _progress(worker)
    click.echo("trainer stopped")


def _progress(worker: object) -> None:
    from driftloop_feedback.learn.worker import TrainerWorker

    assert isinstance(worker, TrainerWorker)
    state = worker.state
    if state is None:
        click.echo(f"trainer {worker.status}")
        return
    held = worker.gate.status(worker.clock())
    click.echo(
        f"trainer consumed={state.consumed} learned={state.challenger.learned} "
        f"duplicates={state.duplicates} candidates={state.candidates_cut} pending={len(state.pending)} "
        f"last_version={state.last_candidate_version}" + ("" if held is None else f" ({held})"),
    )
