"""Create the MLflow store once, before the workers start.

Several processes opening a new sqlite MLflow store at the same moment each run its schema migrations
and all but one fail (``duplicate column name: step``, ``table webhooks already exists``): seen with
the monitor and the trainer started together on a fresh DRIFTLOOP_HOME. The loop opens the store first,
so the workers find it migrated.
"""

from __future__ import annotations

import contextlib

from driftloop.registry import MlflowRegistry, RegistryError
from driftloop.settings import StateSettings


def prepare_registry(model_name: str, state: StateSettings | None = None) -> str:
    """Open (and so create and migrate) the registry's store; returns its tracking URI."""
    registry = MlflowRegistry.from_state(state)
    with contextlib.suppress(RegistryError):  # no champion yet: the store exists all the same
        registry.get_alias(model_name, "champion")
    return registry.tracking_uri
