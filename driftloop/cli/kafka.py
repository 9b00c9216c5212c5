"""``driftloop kafka``: a local single-node Apache Kafka broker for development and demos.

The broker keeps its data under ``$DRIFTLOOP_HOME/kafka`` (restarting it keeps the topics) and its
PID and ports in ``$DRIFTLOOP_HOME/run/kafka.json``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import click

from driftloop.eventlog.broker import (
    BrokerError,
    LocalKafkaBroker,
    fetch_jars,
    is_broker_process,
    jars_dir,
    stop_pid,
)
from driftloop.settings import StateSettings


def _state_file() -> Path:
    return StateSettings().run_dir() / "kafka.json"


def _read_state() -> dict[str, Any] | None:
    path = _state_file()
    if not path.is_file():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@click.group()
def kafka() -> None:
    """Run a local single-node Apache Kafka broker (KRaft, 127.0.0.1) for development and demos.

    \b
    driftloop kafka start            # then: export DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
    driftloop kafka status
    driftloop kafka stop
    """


@kafka.command()
@click.option(
    "--port", type=int, default=9092, show_default=True, help="client port on 127.0.0.1; 0 = any free"
)
@click.option("--controller-port", type=int, default=0, help="KRaft controller port; 0 = any free")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="broker storage (default: $DRIFTLOOP_HOME/kafka); reused on restart",
)
@click.option("--heap", default="512m", show_default=True, help="JVM heap (-Xmx)")
@click.option("--timeout", type=float, default=90.0, show_default=True, help="seconds to wait until ready")
def start(port: int, controller_port: int, data_dir: Path | None, heap: str, timeout: float) -> None:
    """Start the broker in the background (fetching its jars with Maven the first time)."""
    state = _read_state()
    if state and is_broker_process(int(state["pid"])):
        click.echo(f"Kafka is already running at {state['bootstrap_servers']} (pid {state['pid']})")
        return
    data_dir = (data_dir or StateSettings().resolved_home() / "kafka").resolve()
    if state and Path(state["data_dir"]) == data_dir:
        # same storage: keep the ports it was formatted with unless told otherwise
        port = port if port != 9092 else int(state["port"])
        controller_port = controller_port or int(state["controller_port"])
    if port and not _port_free(port):
        raise click.ClickException(f"port {port} on 127.0.0.1 is in use; pass --port 0 for any free port")
    try:
        try:
            jars = jars_dir()
        except BrokerError:
            click.echo("[kafka] fetching the Apache Kafka broker jars from Maven Central (first time only)")
            jars = fetch_jars()
        click.echo(f"[kafka] jars: {jars}")
        broker = LocalKafkaBroker(
            data_dir,
            port=port or None,
            controller_port=controller_port or None,
            heap=heap,
            start_timeout_s=timeout,
        )
        click.echo(
            f"[kafka] starting on 127.0.0.1:{broker.port} (storage {data_dir}); waiting until ready ..."
        )
        broker.start()
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    state = {
        "pid": broker.pid,
        "port": broker.port,
        "controller_port": broker.controller_port,
        "bootstrap_servers": broker.bootstrap_servers,
        "data_dir": str(data_dir),
        "log": str(broker.log_path),
    }
    _state_file().write_text(json.dumps(state, indent=2))
    broker.detach()
    click.echo(f"Kafka running at {broker.bootstrap_servers} (pid {state['pid']}, log {broker.log_path})")
    click.echo(f"Use it with: export DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")


@kafka.command()
def stop() -> None:
    """Stop the broker started by ``driftloop kafka start`` (its data is kept)."""
    state = _read_state()
    if not state:
        click.echo("no local Kafka broker recorded (nothing to stop)")
        return
    stopped = stop_pid(int(state["pid"]))
    _state_file().unlink(missing_ok=True)
    if stopped:
        click.echo(f"stopped Kafka (pid {state['pid']}); data kept in {state['data_dir']}")
    else:
        click.echo(f"Kafka (pid {state['pid']}) was not running")


@kafka.command()
def status() -> None:
    """Say whether the local broker runs, where, and where its data and log are. Exit 1 if not running."""
    state = _read_state()
    if not state or not is_broker_process(int(state["pid"])):
        click.echo("Kafka: not running (start it with `driftloop kafka start`)")
        raise SystemExit(1)
    reachable = not _port_free(int(state["port"]))
    click.echo(
        f"Kafka: running at {state['bootstrap_servers']} (pid {state['pid']}, "
        f"{'accepting connections' if reachable else 'NOT accepting connections'})\n"
        f"data: {state['data_dir']}\nlog:  {state['log']}"
    )
