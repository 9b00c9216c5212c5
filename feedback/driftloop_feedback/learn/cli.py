"""``driftloop trainer run``: the trainer worker as a process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import click


@click.group()
def trainer() -> None:
    """Learn labelled examples into a challenger and register candidates in MLflow."""


@trainer.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="serve Prometheus /metrics on 127.0.0.1 at this port (0: a free one, printed at start)",
)
@click.option("--progress-s", type=float, default=10.0, show_default=True, help="progress line interval")
def run(metrics_port: int | None, progress_s: float) -> None:
    """Run the trainer: read driftloop.labelled exactly once, learn with partial_fit starting from
    models:/<name>@champion, cut candidates (drift event, champion degradation, schedule), register
    each as a new version with alias challenger. Waits (and says so) while no champion is registered
    or no labelled topic exists; retries registration while MLflow is unreachable; never promotes.
    Settings: DRIFTLOOP_TRAINER_* (docs/trainer.md). SIGTERM/SIGINT stop it after a final checkpoint."""
    from prometheus_client import start_http_server
    from pydantic import ValidationError

    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.learn.settings import TrainerSettings
    from driftloop_feedback.learn.worker import TrainerWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = TrainerSettings()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log = open_event_log()
    worker = TrainerWorker(log, MlflowRegistry.from_state(), settings)
    if metrics_port is not None:
        server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
        click.echo(f"trainer metrics on http://127.0.0.1:{server.server_port}/metrics", err=True)
    click.echo(f"trainer ready ({settings.model_name}, topic {settings.labelled_topic})")
    last = 0.0

    def _should_stop() -> bool:
        nonlocal last
        now = time.monotonic()
        if now - last >= progress_s:
            last = now
            _progress(worker)
        return stop.is_set()

    try:
        worker.run(_should_stop)
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
    click.echo(
        f"trainer consumed={state.consumed} learned={state.challenger.learned} "
        f"duplicates={state.duplicates} candidates={state.candidates_cut} pending={len(state.pending)} "
        f"last_version={state.last_candidate_version}",
    )
