"""``driftloop monitor run``: the drift monitor worker."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click


@click.group()
def monitor() -> None:
    """Watch the served models' input features for drift (off the request path)."""


@monitor.command()
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="serve Prometheus /metrics on 127.0.0.1 at this port (0: a free one, printed at start)",
)
def run(metrics_port: int | None) -> None:
    """Read the request log (topic seldon), window each predictor's and model version's input rows by
    count and time, test each window against that version's drift reference in MLflow, and write
    drift events to driftloop.drift. Settings: DRIFTLOOP_MONITOR_* (docs/drift-monitor.md).
    SIGTERM/SIGINT stop it after a final checkpoint."""
    from prometheus_client import start_http_server
    from pydantic import ValidationError

    from driftloop.eventlog import open_event_log
    from driftloop.registry import MlflowRegistry
    from driftloop_feedback.monitor.registry_source import RegistryReferenceSource
    from driftloop_feedback.monitor.settings import MonitorSettings
    from driftloop_feedback.monitor.worker import DriftMonitor, default_state_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = MonitorSettings()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    source = RegistryReferenceSource(
        MlflowRegistry.from_state(), settings.model_name, settings.fallback_drift_model
    )
    log = open_event_log()
    worker = DriftMonitor(log, settings, source, state_dir=default_state_dir(settings))
    try:
        if metrics_port is not None:
            server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
            click.echo(f"monitor metrics on http://127.0.0.1:{server.server_port}/metrics", err=True)
        click.echo(
            f"monitor ready (group {settings.group_id}, {settings.detector_kind}, "
            f"windows of {settings.window_rows} rows or {settings.window_s:g}s)",
            err=True,
        )
        worker.run(stop.is_set)
    finally:
        worker.close()
        log.close()
