"""What every worker command of the feedback side shares (joiner, drift monitor, trainer, validator,
rollout controller): the ``--metrics-port`` option, log set-up, settings errors as one-line CLI errors,
a stop flag set by SIGTERM/SIGINT, the ``<name> metrics on <url>`` line that ``driftloop loop`` reads
to list each worker's /metrics, and a stop check that prints progress every few seconds.

>>> stop = threading.Event()
>>> seen = []
>>> check = stop_check(stop, 0.0, lambda: seen.append("progress"))
>>> check(), seen
(False, ['progress'])
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

import click

from driftloop.errors import DriftloopError

T = TypeVar("T")

metrics_port_option = click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="serve Prometheus /metrics at this port (0: a free one, printed at start), on 127.0.0.1 unless "
    "DRIFTLOOP_METRICS_HOST says otherwise (0.0.0.0 in a pod, for Prometheus to scrape it)",
)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_settings(factory: Callable[[], T]) -> T:
    """Build typed settings from the environment; a validation error is a one-line CLI error."""
    from pydantic import ValidationError

    try:
        return factory()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from exc


@contextmanager
def starting(log: Any) -> Iterator[None]:
    """A worker's start-up refused on purpose (a state store it cannot use, topics that are not
    co-partitioned, ...) as a one-line CLI error naming what to do, the event log closed."""
    try:
        yield
    except DriftloopError as exc:
        log.close()
        raise click.ClickException(str(exc)) from exc


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the worker finishes its step, checkpoints and exits."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return stop


def metrics_host() -> str:
    """Where workers serve /metrics: ``DRIFTLOOP_METRICS_HOST``, 127.0.0.1 by default."""
    host = os.environ.get("DRIFTLOOP_METRICS_HOST", "").strip() or "127.0.0.1"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise click.ClickException(
            f"DRIFTLOOP_METRICS_HOST={host!r} is not an IP address (e.g. 127.0.0.1, or 0.0.0.0 in a pod)"
        ) from None
    return host


def serve_metrics(name: str, port: int | None, registry: Any) -> None:
    """Serve ``registry`` on ``metrics_host()``:``port`` (None: not at all) and say where on stderr."""
    if port is None:
        return
    from prometheus_client import start_http_server

    host = metrics_host()
    server, _ = start_http_server(port, addr=host, registry=registry)
    click.echo(f"{name} metrics on http://{host}:{server.server_port}/metrics", err=True)


def stop_check(
    stop: threading.Event,
    progress_s: float,
    progress: Callable[[], None],
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], bool]:
    """A ``should_stop`` for a worker's run loop that also calls ``progress`` every ``progress_s``."""
    last: float | None = None

    def should_stop() -> bool:
        nonlocal last
        now = clock()
        if last is None or now - last >= progress_s:
            last = now
            progress()
        return stop.is_set()

    return should_stop
