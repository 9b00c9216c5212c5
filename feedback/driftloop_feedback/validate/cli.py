"""``driftloop validator run``: the validator worker as a process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import click


@click.group()
def validator() -> None:
    """Validate each challenger against the champion on fresh labelled rows and write the verdict."""


@validator.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="serve Prometheus /metrics on 127.0.0.1 at this port (0: a free one, printed at start)",
)
@click.option("--progress-s", type=float, default=10.0, show_default=True, help="progress line interval")
def run(metrics_port: int | None, progress_s: float) -> None:
    """Run the validator: watch the aliases champion and challenger of the model; when the challenger
    is a version without a verdict, score both models on the labelled rows of driftloop.labelled read
    from then on (each once, after the candidate's data window), decide with the anytime-valid paired
    test and write pass / fail / inconclusive (budget used) to the version's tags and run metrics. A
    newer challenger abandons the old one (tagged superseded). Waits (and says so) while no champion,
    challenger or labelled topic exists; retries with backoff while MLflow is unreachable; never writes
    a verdict twice. Settings: DRIFTLOOP_VALIDATOR_* (worker) and DRIFTLOOP_VALIDATION_* (the test:
    alpha, margin, mode, loss, loss bound, budget); see docs/validation.md. SIGTERM/SIGINT stop it after
    saving its state."""
    from prometheus_client import start_http_server
    from pydantic import ValidationError

    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.validate.errors import ValidatorError
    from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
    from driftloop_feedback.validate.worker import ValidatorWorker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = ValidatorSettings()
        validation = ValidationSettings()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log = open_event_log()
    worker = ValidatorWorker(log, MlflowRegistry.from_state(), settings, validation)
    if metrics_port is not None:
        server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
        click.echo(f"validator metrics on http://127.0.0.1:{server.server_port}/metrics", err=True)
    click.echo(f"validator ready ({settings.model_name}, topic {settings.labelled_topic})")
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
    except ValidatorError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        log.close()
    _progress(worker)
    click.echo("validator stopped")


def _progress(worker: object) -> None:
    from driftloop_feedback.validate.worker import ValidatorWorker

    assert isinstance(worker, ValidatorWorker)
    state = worker.state
    run = state.run if state is not None else None
    if run is None:
        click.echo(f"validator {worker.status}")
        return
    d = run.validator.test.decision()
    click.echo(
        f"validator challenger=v{run.challenger.version} champion=v{run.champion.version} n={d.n} "
        f"bounds=[{d.lower:.4g}, {d.upper:.4g}] threshold={d.threshold:g} "
        f"skipped={sum(run.skipped.values())}"
    )
