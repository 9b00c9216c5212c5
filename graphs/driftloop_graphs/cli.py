"""``driftloop up MANIFEST`` / ``driftloop down`` / ``driftloop traffic``: run SeldonDeployments
locally with MLServer, Seldon's ingress paths, traffic split, shadow and request logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from driftloop.errors import DriftloopError

if TYPE_CHECKING:
    from driftloop_graphs.runtime import LocalRuntime


@click.command("up")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--port", default=9000, show_default=True, help="Ingress port (0 = any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Ingress address.")
@click.option("--control-port", default=0, show_default=True, help="Control API port (0 = any free port).")
@click.option("--control-host", default="127.0.0.1", show_default=True, help="Control API address.")
@click.option(
    "--models",
    "models_root",
    default=Path("models"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model repository: graph node <name> is the folder <models>/<name>/.",
)
@click.option(
    "--log-policy",
    type=click.Choice(["block", "sample"]),
    default="block",
    show_default=True,
    help="When the request-log queue is full: block the request (up to --log-block-timeout) or leave "
    "the event out; every drop/sample is counted in /metrics.",
)
@click.option("--log-queue-size", default=10_000, show_default=True, help="Request-log queue bound (events).")
@click.option("--log-block-timeout", default=2.0, show_default=True, help="Seconds to wait for queue room.")
@click.option(
    "--detach", is_flag=True, help="Run in the background; return once ready (`driftloop down` stops)."
)
def up(
    manifest: Path,
    port: int,
    host: str,
    control_port: int,
    control_host: str,
    models_root: Path,
    log_policy: str,
    log_queue_size: int,
    log_block_timeout: float,
    detach: bool,
) -> None:
    """Run the SeldonDeployment(s) in MANIFEST on this machine, as `kubectl apply` would on a cluster.

    One MLServer process per predictor serves that predictor's graph nodes; the ingress serves
    /seldon/<namespace>/<name>/v2/models/infer (and .../v2/models/<model>/infer, .../ready,
    .../v2/health/ready, metadata) with Seldon's executor semantics, splits traffic between
    predictors (stable per Seldon-Puid), mirrors to a shadow, and logs requests/responses to the
    event log (Kafka if DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set, else the embedded log) in Seldon's
    Kafka logger format. Ctrl-C or `driftloop down` stops everything.
    """
    from driftloop_graphs.run_state import RunState, pid_alive, runtime_dir

    directory = runtime_dir()
    existing = RunState.read(directory)
    if existing is not None and pid_alive(existing.pid):
        raise click.ClickException(
            f"a local runtime is already running (pid {existing.pid}, port {existing.port}): "
            "run `driftloop down` first"
        )
    RunState.clear(directory)
    if detach:
        _detach(directory)
        return
    from driftloop_graphs.request_log import RequestLogSettings

    # The request-log writer thread holds the GIL while it encodes a batch; at Python's default 5 ms
    # switch interval a request arriving then waits for it. 0.5 ms measured here: logging-on p50
    # through the ingress 1.41-1.44x -> 1.34-1.35x of a direct MLServer call.
    sys.setswitchinterval(0.0005)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(
                _run(
                    manifest,
                    directory,
                    host=host,
                    port=port,
                    control_host=control_host,
                    control_port=control_port,
                    models_root=models_root,
                    log=RequestLogSettings(
                        queue_size=log_queue_size,
                        policy="sample" if log_policy == "sample" else "block",
                        block_timeout_s=log_block_timeout,
                    ),
                )
            )
    except DriftloopError as exc:  # invalid manifest, a model that does not load, broker down ...
        raise click.ClickException(str(exc)) from exc


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (MLServer depends on it): a faster event loop for the ingress."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _detach(directory: Path) -> None:
    from driftloop_graphs.run_state import RunState

    args = [a for a in sys.argv[1:] if a != "--detach"]
    log_path = directory / "up.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftloop", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = RunState.read(directory)
        if state is not None and state.pid == process.pid:
            click.echo(f"driftloop up running in the background (pid {process.pid}); log {log_path}")
            for d in state.deployments:
                click.echo(f"  {d['url']}/v2/models/infer")
            return
        if process.poll() is not None:
            raise click.ClickException(f"driftloop up exited with {process.returncode}; see {log_path}")
        time.sleep(0.2)
    raise click.ClickException(f"driftloop up not ready after 180 s; see {log_path}")


async def _run(
    manifest: Path,
    directory: Path,
    *,
    host: str,
    port: int,
    control_host: str,
    control_port: int,
    models_root: Path,
    log: object,
) -> None:
    from driftloop.eventlog import open_event_log
    from driftloop_graphs.manifest import load_manifests
    from driftloop_graphs.request_log import RequestLogSettings
    from driftloop_graphs.run_state import RunState
    from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
    from driftloop_graphs.spec import Deployment

    assert isinstance(log, RequestLogSettings)
    deployments = [Deployment.from_doc(doc) for doc in load_manifests(manifest)]
    names = ", ".join(f"{d.namespace}/{d.name}" for d in deployments)
    count = sum(len(d.predictors) for d in deployments)
    click.echo(f"starting {names}: {count} MLServer process(es), one per predictor ...")
    event_log = open_event_log()
    settings = RuntimeSettings(
        models_root=models_root,
        run_dir=directory,
        host=host,
        port=port,
        control_host=control_host,
        control_port=control_port,
        request_log=log,
    )
    runtime = LocalRuntime(deployments, settings, event_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        ready_s = await runtime.start()

        def record_state() -> RunState:
            state = RunState(
                pid=os.getpid(),
                port=runtime.port,
                control_port=runtime.control_port,
                host=host,
                control_host=control_host,
                manifest=str(manifest.resolve()),
                ready_s=round(ready_s, 2),
                deployments=[
                    {"namespace": d.namespace, "name": d.name, "url": runtime.url(d)} for d in deployments
                ],
                mlserver_pids=runtime.pids(),
                children=_children(runtime),
            )
            state.write(directory, runtime.token)
            return state

        state = record_state()
        runtime.on_processes_changed.append(record_state)  # a restarted MLServer has a new PID
        click.echo(f"ready in {ready_s:.1f} s")
        for d in deployments:
            click.echo(f"  {runtime.url(d)}/v2/models/infer")
        click.echo(f"  metrics  http://{host}:{runtime.port}/metrics")
        click.echo(f"  control  {state.control_url} (token in {directory / 'control.token'})")
        click.echo("Ctrl-C or `driftloop down` to stop")
        await stop.wait()
        click.echo("stopping ...")
    finally:
        await runtime.stop()
        event_log.close()
        RunState.clear(directory)
    click.echo("stopped")


def _children(runtime: LocalRuntime) -> list[dict[str, Any]]:
    from driftloop_graphs.run_state import child_record

    records = [child_record(pid, "mlserver") for pid in runtime.pids()]
    records += [child_record(pid, "mlserver-forkserver") for pid in runtime.forkserver_pids()]
    return [r for r in records if r is not None]


@click.command("down")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait before killing.")
def down(timeout: float) -> None:
    """Stop the local runtime started by `driftloop up` (its MLServer processes included)."""
    from driftloop_graphs.run_state import RunState, pid_alive, runtime_dir, stop_recorded

    directory = runtime_dir()
    state = RunState.read(directory)
    if state is None:
        click.echo("no local runtime is running")
        RunState.clear(directory)
        return
    if pid_alive(state.pid):
        click.echo(f"stopping local runtime (pid {state.pid}) ...")
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(state.pid):
            click.echo(f"still running after {timeout:.0f} s: killing it", err=True)
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
    else:
        click.echo(f"the local runtime (pid {state.pid}) is not running")
    # what a dead (e.g. SIGKILLed) `up` left behind: its children, each checked to be the process recorded
    stopped = stop_recorded(state.children, timeout_s=min(timeout, 15.0))
    if stopped:
        click.echo(f"stopped {len(stopped)} process(es) it had left running: pid(s) {stopped}")
    RunState.clear(directory)
    click.echo("stopped")


@click.command("traffic")
@click.argument("deployment", metavar="NAMESPACE/NAME")
@click.argument("weights", nargs=-1, metavar="[PREDICTOR=WEIGHT]...")
def traffic(deployment: str, weights: tuple[str, ...]) -> None:
    """Show, or set, the traffic split of a deployment run by `driftloop up`.

    Example: `driftloop traffic plant/pump-bearing-temp main=75 canary=25` (weights of the
    non-shadow predictors, summing to 100). Without weights it prints the current state.
    """
    from driftloop_graphs.control_client import ControlClient

    namespace, _, name = deployment.partition("/")
    if not name:
        raise click.BadParameter("use NAMESPACE/NAME, e.g. plant/pump-bearing-temp", param_hint="DEPLOYMENT")
    parsed: dict[str, int] = {}
    for item in weights:
        predictor, _, value = item.partition("=")
        if not value.isdigit():
            raise click.BadParameter(f"{item!r}: use PREDICTOR=WEIGHT, e.g. canary=25", param_hint="WEIGHTS")
        parsed[predictor] = int(value)
    try:
        client = ControlClient.from_run_dir()
        state = client.set_traffic(namespace, name, parsed) if parsed else client.deployment(namespace, name)
    except DriftloopError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(state, indent=2))
