"""``driftloop serve``: MLServer on the model repository, bound to 127.0.0.1, until Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from driftloop.cli.train import DEFAULT_REPOSITORY, echo_step, quiet_third_party_logs
from driftloop.errors import DriftloopError
from driftloop.mlserver_env import server_env

if TYPE_CHECKING:
    from driftloop.settings import StateSettings


def check_registered(repository: Path, state: StateSettings | None = None) -> None:
    """Fail fast, before MLServer starts, when a model folder's registry URI resolves to nothing."""
    from driftloop.registry import MlflowRegistry, RegistryError

    registry: MlflowRegistry | None = None
    for settings_file in sorted(repository.glob("*/model-settings.json")):
        uri = (json.loads(settings_file.read_text()).get("parameters") or {}).get("uri", "")
        if not str(uri).startswith("models:/"):
            continue
        registry = registry or MlflowRegistry.from_state(state)
        try:
            registry.resolve(uri)
        except RegistryError as exc:
            raise RegistryError(f"{settings_file.parent.name}: {exc}") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command("serve")
@click.option(
    "--repository",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=DEFAULT_REPOSITORY,
    show_default=True,
    help="MLServer model repository (one folder per model with model-settings.json).",
)
@click.option("--parallel-workers", default=0, show_default=True, help="MLServer inference worker processes.")
def serve(repository: Path, parallel_workers: int) -> None:
    """Serve the model repository with MLServer on 127.0.0.1 (free ports) until Ctrl-C.

    The models load from the MLflow registry of DRIFTLOOP_HOME (or DRIFTLOOP_MLFLOW_TRACKING_URI):
    run `driftloop train` first.
    """
    from driftloop.mlserver_process import MLServerProcess

    quiet_third_party_logs()
    try:
        check_registered(repository)
    except DriftloopError as exc:
        raise click.ClickException(str(exc)) from None
    started = time.perf_counter()
    echo_step(f"starting MLServer on {repository} (parallel_workers={parallel_workers})")
    server = MLServerProcess(repository, env=server_env(), parallel_workers=parallel_workers)
    try:
        server.start()
    except DriftloopError as exc:
        raise click.ClickException(str(exc)) from None
    echo_step(f"ready in {time.perf_counter() - started:.1f}s (pid {server.pid}, log {server.log_path})")
    echo_step(f"V2 HTTP  {server.url}/v2/models/<model>/infer")
    echo_step(f"V2 gRPC  {server.grpc_address}; metrics {server.metrics_url}")
    echo_step("Ctrl-C to stop")
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a shell's background job starts with it ignored
        signal.signal(sig, _interrupt)
    try:
        while True:
            time.sleep(1.0)
            if not server.running:
                raise click.ClickException(f"MLServer exited; log {server.log_path}:\n{server.log_tail()}")
    except KeyboardInterrupt:
        echo_step("stopping MLServer")
    finally:
        server.stop()
        echo_step(f"stopped (driftloop pid {os.getpid()})")
