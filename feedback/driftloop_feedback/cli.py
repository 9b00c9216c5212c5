"""``driftloop feedback serve`` (the ground-truth API) and ``driftloop feedback join`` (a joiner)."""

from __future__ import annotations

import socket
import threading
from typing import Any

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
def feedback() -> None:
    """Accept ground truth and join it with logged predictions into labelled examples."""


@feedback.command()
@click.option("--host", default=None, help="bind address (default 127.0.0.1, DRIFTLOOP_FEEDBACK_HOST)")
@click.option("--port", type=int, default=None, help="port (default 8090, DRIFTLOOP_FEEDBACK_PORT; 0 = any)")
def serve(host: str | None, port: int | None) -> None:
    """Serve POST /v1/feedback, GET /v1/feedback/stats, /health/ready and /metrics.

    Auth: DRIFTLOOP_FEEDBACK_TOKEN (bearer). DRIFTLOOP_FEEDBACK_MODE=production refuses to start with
    an empty or placeholder token. Records go to the event log (Kafka when
    DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set, else the embedded log under DRIFTLOOP_HOME)."""
    import uvicorn
    from pydantic import ValidationError

    from driftloop.eventlog import open_event_log
    from driftloop_feedback.api import FeedbackSettings, create_app

    try:
        settings = FeedbackSettings()
    except ValidationError as exc:  # messages only: an input (a token) is never shown
        raise click.ClickException(_settings_problems(exc)) from None
    host = host or settings.host
    port = settings.port if port is None else port
    if not settings.token.get_secret_value():
        click.echo("warning: no DRIFTLOOP_FEEDBACK_TOKEN: the API accepts unauthenticated requests", err=True)
    listener = _listen(host, port)  # bound here, so --port 0 prints the port it got
    log = open_event_log()
    try:
        bound = listener.getsockname()[1]
        click.echo(f"feedback API on http://{_url_host(host)}:{bound} -> topic {settings.feedback_topic}")
        config = uvicorn.Config(create_app(settings, log), log_level="warning")
        uvicorn.Server(config).run(sockets=[listener])
    finally:
        listener.close()
        log.close()


def _settings_problems(exc: Any) -> str:
    """A settings ValidationError as one line per problem, without the values given."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        lines.append(f"DRIFTLOOP_FEEDBACK_{where.upper()}: {message}" if where else message)
    return "invalid feedback settings: " + "; ".join(lines)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(0 picks a free one)"
        ) from exc
    listener.listen(2048)
    return listener


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@feedback.command()
@metrics_port_option
@click.option("--progress-s", type=float, default=10.0, show_default=True, help="progress line interval")
def join(metrics_port: int | None, progress_s: float) -> None:
    """Run a joiner: re-key the Seldon request log, join by request id and by asset + event time,
    write labelled examples to driftloop.labelled. Start more processes to scale out (same
    DRIFTLOOP_JOINER_GROUP_ID and state directory). Settings: DRIFTLOOP_JOINER_* (see docs/feedback.md).
    SIGTERM/SIGINT stop it after a final checkpoint."""
    from driftloop.eventlog import open_event_log
    from driftloop_feedback.join.pipeline import Joiner
    from driftloop_feedback.join.settings import JoinerSettings

    configure_logging()
    settings = load_settings(JoinerSettings)
    stop = stop_on_signals()
    log = open_event_log()
    with starting(log):
        joiner = Joiner(log, settings)
    serve_metrics("joiner", metrics_port, joiner.registry())
    click.echo(f"joiner ready (group {settings.group_id}, mode {settings.mode})", err=True)
    failed: list[BaseException] = []

    def _run() -> None:
        try:
            joiner.run(stop.is_set)
        except BaseException as exc:  # reported below, from the main thread
            failed.append(exc)
            stop.set()

    runner = threading.Thread(target=_run, name="joiner", daemon=True)
    try:
        runner.start()
        while runner.is_alive():
            runner.join(timeout=progress_s)
            if runner.is_alive():
                c = joiner.counters()
                pending = joiner.request.stats.pending + joiner.asset.stats.pending
                click.echo(
                    f"joined={c.joined} expired={c.expired} unmatched={c.unmatched} late={c.late} "
                    f"duplicate={c.duplicate} orphan_truth={c.orphan_truth} pending={pending} "
                    f"sampled_out={joiner.sampled_out()}",
                    err=True,
                )
        if failed:
            raise click.ClickException(f"joiner stopped: {failed[0]!r}")
    finally:
        joiner.close()
        log.close()
