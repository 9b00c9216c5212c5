"""``driftloop loop run | status | stop``: the loop's workers together, on the embedded default."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import click


@click.group()
def loop() -> None:
    """Run the loop's workers together (feedback API, joiner, drift monitor, trainer, validator and,
    with --manifest, the local runtime), each a supervised child process (docs/loop.md)."""


@loop.command()
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="also run this SeldonDeployment on the local runtime (`driftloop up`), started first",
)
@click.option(
    "--models",
    "models_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("models"),
    show_default=True,
    help="model repository for --manifest",
)
@click.option("--runtime-port", type=int, default=9000, show_default=True, help="ingress port (0 = any)")
@click.option(
    "--feedback-port",
    type=int,
    default=None,
    help="feedback API port (default DRIFTLOOP_FEEDBACK_PORT or 8090; 0 = any)",
)
@click.option(
    "--metrics-base-port",
    type=int,
    default=0,
    show_default=True,
    help="worker i serves /metrics on this port + i; 0: each picks a free port (see `loop status`)",
)
@click.option(
    "--rollout/--no-rollout",
    default=False,
    show_default=True,
    help="also run the rollout controller (`driftloop rollout run`) against the runtime's canary predictor",
)
@click.option("--without", multiple=True, help="leave this worker out (repeatable), e.g. --without trainer")
@click.option("--backoff-initial-s", type=float, default=1.0, show_default=True, help="first restart wait")
@click.option("--backoff-max-s", type=float, default=60.0, show_default=True, help="longest restart wait")
@click.option("--stop-timeout-s", type=float, default=30.0, show_default=True, help="SIGTERM, then SIGKILL")
def run(
    manifest: Path | None,
    models_root: Path,
    runtime_port: int,
    feedback_port: int | None,
    metrics_base_port: int,
    rollout: bool,
    without: tuple[str, ...],
    backoff_initial_s: float,
    backoff_max_s: float,
    stop_timeout_s: float,
) -> None:
    """Start the workers as child processes (`python -m driftloop ...`), restart one that exits (with
    a doubling backoff), and stop them all, by PID, on SIGINT/SIGTERM. Logs: $DRIFTLOOP_HOME/run/loop/
    <worker>.log; status: `driftloop loop status`. Every worker reads its own settings from the
    environment (DRIFTLOOP_FEEDBACK_*, DRIFTLOOP_JOINER_*, DRIFTLOOP_MONITOR_*, DRIFTLOOP_TRAINER_*,
    DRIFTLOOP_VALIDATOR_*, DRIFTLOOP_VALIDATION_*); the event log is Kafka when
    DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is set, else the embedded log under DRIFTLOOP_HOME. Without
    DRIFTLOOP_FEEDBACK_TOKEN a token is generated and written to run/loop/feedback.token (0600)."""
    from pydantic import ValidationError

    from driftloop.settings import StateSettings
    from driftloop_feedback.loop.status import LoopStatus, loop_dir, pid_alive
    from driftloop_feedback.loop.supervisor import Supervisor, SupervisorSettings, spawn_process
    from driftloop_feedback.loop.workers import LoopOptions, loop_workers

    state = StateSettings()
    home = state.resolved_home()
    directory = loop_dir(state)
    existing = LoopStatus.read(directory)
    if existing is not None and existing.pid != os.getpid() and pid_alive(existing.pid):
        raise click.ClickException(
            f"a loop is already running in {home} (pid {existing.pid}): `driftloop loop stop` first"
        )
    try:
        settings = SupervisorSettings(
            backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, stop_timeout_s=stop_timeout_s
        )
        options = LoopOptions(
            manifest=manifest.resolve() if manifest else None,
            models_root=models_root.resolve(),
            runtime_port=runtime_port,
            feedback_port=feedback_port,
            metrics_base_port=metrics_base_port,
            without=frozenset(without),
            rollout=rollout,
        )
        specs = loop_workers(options)
    except (ValidationError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    env = {"DRIFTLOOP_HOME": str(home)}  # absolute: every child uses the same state, whatever its cwd
    token_file = None
    if not os.environ.get("DRIFTLOOP_FEEDBACK_TOKEN") and "feedback-api" in {s.name for s in specs}:
        token_file = directory / "feedback.token"
        env["DRIFTLOOP_FEEDBACK_TOKEN"] = _write_token(token_file)
    from driftloop_feedback.loop.registry_store import prepare_registry

    # one process migrates a new sqlite store; several at once fail (registry_store.py)
    click.echo(f"loop: registry {prepare_registry(_model_name())}", err=True)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    started_at = time.time()

    def _record(sup: Supervisor) -> None:
        LoopStatus.of(
            sup,
            pid=os.getpid(),
            started_at=started_at,
            home=home,
            token_file=token_file,
            wall_now=time.time(),
            mono_now=time.monotonic(),
        ).write(directory)

    supervisor = Supervisor(
        specs,
        directory,
        settings,
        spawn=lambda spec, log_path: spawn_process(spec, log_path, env),
        on_change=_record,
        say=lambda line: click.echo(f"loop: {line}", err=True),
    )
    click.echo(f"loop: {len(specs)} workers, home {home}, logs in {directory}", err=True)
    if token_file is not None:
        click.echo(f"loop: feedback API token in {token_file}", err=True)
    supervisor.run(stop.is_set)
    click.echo("loop: stopped", err=True)


def _model_name() -> str:
    return os.environ.get("DRIFTLOOP_TRAINER_MODEL_NAME", "pump-bearing-temp")


def _write_token(path: Path) -> str:
    token = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    os.chmod(path, 0o600)
    return token


@loop.command()
def status() -> None:
    """Show the loop's workers: state, PID, uptime, restarts, last exit code, /metrics URL and log."""
    from driftloop_feedback.loop.status import LoopStatus, loop_dir, pid_alive

    directory = loop_dir()
    current = LoopStatus.read(directory)
    if current is None:
        click.echo(f"no loop has run in this DRIFTLOOP_HOME ({directory} has no status)")
        raise SystemExit(1)
    alive = pid_alive(current.pid)
    click.echo(
        f"loop pid {current.pid} {'running' if alive else 'NOT running'}, home {current.home}"
        + (f", feedback token in {current.feedback_token_file}" if current.feedback_token_file else "")
    )
    now = time.time()
    click.echo(f"{'worker':<13} {'state':<8} {'pid':>7} {'up':>8} {'restarts':>8} {'exit':>5}  metrics")
    for w in current.workers:
        state = w.status if alive else "stopped"
        running = alive and w.pid is not None and pid_alive(w.pid)
        up = f"{now - w.started_at:.0f}s" if running and w.started_at else "-"
        click.echo(
            f"{w.name:<13} {state:<8} {w.pid if running else '-':>7} {up:>8} {w.restarts:>8} "
            f"{'-' if w.last_exit is None else w.last_exit:>5}  {w.metrics_url or '-'}"
        )
    click.echo(f"logs: {directory}/<worker>.log")
    if not alive:
        raise SystemExit(1)


@loop.command("stop")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for the loop to stop")
def stop_loop(timeout: float) -> None:
    """Stop a running `driftloop loop run` (SIGTERM to its PID; it stops its workers)."""
    from driftloop_feedback.loop.status import LoopStatus, loop_dir, pid_alive

    current = LoopStatus.read(loop_dir())
    if current is None or not pid_alive(current.pid):
        click.echo("no loop is running")
        return
    os.kill(current.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(current.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(current.pid):
        raise click.ClickException(f"the loop (pid {current.pid}) is still running after {timeout:g} s")
    click.echo(f"loop (pid {current.pid}) stopped")
