"""``driftloop validator run``: the validator worker as a process."""

from __future__ import annotations

import click

from driftloop_feedback.worker_cli import (
    configure_logging,
    load_settings,
    metrics_port_option,
    serve_metrics,
    stop_check,
    stop_on_signals,
)


@click.group()
def validator() -> None:
    """Validate each challenger against the champion on fresh labelled rows and write the verdict."""


@validator.command()
@metrics_port_option
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
    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.validate.errors import ValidatorError
    from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
    from driftloop_feedback.validate.worker import ValidatorWorker

    configure_logging()
    settings = load_settings(ValidatorSettings)
    validation = load_settings(ValidationSettings)
    stop = stop_on_signals()
    log = open_event_log()
    worker = ValidatorWorker(log, MlflowRegistry.from_state(), settings, validation)
    serve_metrics("validator", metrics_port, worker.metrics.registry)
    click.echo(f"validator ready ({settings.model_name}, topic {settings.labelled_topic})")
    should_stop = stop_check(stop, progress_s, lambda: _progress(worker))
    try:
        worker.run(should_stop)
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
