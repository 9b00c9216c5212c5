"""The ``driftloop`` command. Subcommands live in their own modules and are imported only when used,
so ``driftloop --help`` stays fast (mlflow/alibi-detect imports cost seconds)."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

# name -> "module:attribute" of a click command or group. Each area owns its own module.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "driftloop.cli.data:simulate",
    "train": "driftloop.cli.train:train",
    "serve": "driftloop.cli.serve:serve",
    "demo": "driftloop.cli.demo:demo",
    "up": "driftloop_graphs.cli:up",
    "down": "driftloop_graphs.cli:down",
    "traffic": "driftloop_graphs.cli:traffic",
    "validate": "driftloop_graphs.cli_validate:validate",
    "feedback": "driftloop_feedback.cli:feedback",
    "kafka": "driftloop.cli.kafka:kafka",
    "trainer": "driftloop_feedback.learn.cli:trainer",
    "validator": "driftloop_feedback.validate.cli:validator",
    "monitor": "driftloop_feedback.monitor.cli:monitor",
    "rollout": "driftloop_feedback.rollout.cli:rollout",
    "loop": "driftloop_feedback.loop.cli:loop",
    "replay": "driftloop.cli.replay:replay",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *SUBCOMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="driftloop")
def cli() -> None:
    """driftloop: serve, watch, learn and roll out industrial models in a closed loop."""


def main() -> None:
    quiet_mlflow_telemetry()
    cli()


def quiet_mlflow_telemetry() -> None:
    """MLflow >= 3.x sends usage telemetry from a thread unless told not to. Plants are often
    air-gapped: every driftloop process (and the MLServers, workers and servers it starts, which inherit
    the environment) turns it off unless the user set ``MLFLOW_DISABLE_TELEMETRY`` themselves. Without a
    network its thread also removed an environment variable while a REST call was reading the
    environment (a ``KeyError`` seen in this project's tests)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
