"""``driftloop monitor run``: the drift monitor worker."""

from __future__ import annotations

import click

from driftloop_feedback.worker_cli import (
    configure_logging,
    load_settings,
    metrics_port_option,
    serve_metrics,
    starting,
    stop_on_signals,
)


@click.group()
def monitor() -> None:
    """Watch the served models' input features for drift (off the request path)."""


@monitor.command()
@metrics_port_option
def run(metrics_port: int | None) -> None:
    """Read the request log (topic seldon), window each predictor's and model version's input rows by
    count and time, test each window against that version's drift reference in MLflow, and write
    drift events to driftloop.drift. Settings: DRIFTLOOP_MONITOR_* (docs/drift-monitor.md).
    SIGTERM/SIGINT stop it after a final checkpoint."""
    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.monitor.registry_source import RegistryReferenceSource
    from driftloop_feedback.monitor.settings import MonitorSettings
    from driftloop_feedback.monitor.worker import DriftMonitor, default_state_dir

    configure_logging()
    settings = load_settings(MonitorSettings)
    stop = stop_on_signals()
    source = RegistryReferenceSource(
        MlflowRegistry.from_state(), settings.model_name, settings.fallback_drift_model
    )
    log = open_event_log()
    with starting(log):
        worker = DriftMonitor(log, settings, source, state_dir=default_state_dir(settings))
    try:
        serve_metrics("monitor", metrics_port, worker.metrics.registry)
        click.echo(
            f"monitor ready (group {settings.group_id}, {settings.detector_kind}, "
            f"windows of {settings.window_rows} rows or {settings.window_s:g}s)",
            err=True,
        )
        worker.run(stop.is_set)
    finally:
        worker.close()
        log.close()
