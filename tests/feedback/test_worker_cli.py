"""The worker commands' shared parts: the stop check's progress cadence, the metrics line that
``driftloop loop`` reads, signals setting the stop flag, settings errors as CLI errors."""

from __future__ import annotations

import doctest
import os
import signal
import socket
import threading

import click
import pytest
from driftloop_feedback import worker_cli
from driftloop_feedback.loop.workers import WORKER_METRICS
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError


def test_docstring_examples_run() -> None:
    assert doctest.testmod(worker_cli).failed == 0


def test_progress_every_interval_on_the_given_clock() -> None:
    now = [0.0]
    calls: list[float] = []
    stop = threading.Event()
    check = worker_cli.stop_check(stop, 10.0, lambda: calls.append(now[0]), clock=lambda: now[0])
    for t in (0.0, 5.0, 9.9, 10.0, 15.0, 20.5):
        now[0] = t
        assert check() is False
    stop.set()
    assert check() is True
    assert calls == [0.0, 10.0, 20.5]


def test_metrics_line_is_the_one_the_loop_reads(capsys: pytest.CaptureFixture[str]) -> None:
    worker_cli.serve_metrics("trainer", 0, CollectorRegistry())
    line = capsys.readouterr().err
    found = WORKER_METRICS.search(line)
    assert found is not None and found.group(1).startswith("http://127.0.0.1:"), line


def test_no_port_serves_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    worker_cli.serve_metrics("trainer", None, CollectorRegistry())
    assert capsys.readouterr().err == ""


def test_sigterm_sets_the_stop_flag() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        stop = worker_cli.stop_on_signals()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])


class _Needs(BaseModel):
    port: int


def test_settings_errors_become_one_cli_error() -> None:
    with pytest.raises(click.ClickException) as raised:
        worker_cli.load_settings(lambda: _Needs(port="not a port"))  # type: ignore[arg-type]
    assert isinstance(raised.value.__cause__, ValidationError)
    assert "port" in raised.value.message


def test_metrics_host_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_METRICS_HOST", "0.0.0.0")  # a pod: Prometheus scrapes the pod IP
    worker_cli.serve_metrics("joiner", 0, CollectorRegistry())
    found = WORKER_METRICS.search(capsys.readouterr().err)
    assert found is not None and found.group(1).startswith("http://0.0.0.0:"), found
    port = int(found.group(1).split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:  # listening on every address
        assert conn.getpeername()[1] == port


def test_a_metrics_host_that_is_not_an_address_is_a_cli_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_METRICS_HOST", "localhost:9100")
    with pytest.raises(click.ClickException, match="DRIFTLOOP_METRICS_HOST='localhost:9100' is not an IP"):
        worker_cli.serve_metrics("joiner", 0, CollectorRegistry())
