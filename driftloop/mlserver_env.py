"""The environment an MLServer process needs to find driftloop's state and MLflow registry.

Used by ``driftloop serve`` and by the local runtime (``driftloop up``): a library module, so the
runtime does not import the CLI.
"""

from __future__ import annotations

from driftloop.settings import StateSettings


def server_env(state: StateSettings | None = None) -> dict[str, str]:
    """The environment that lets the runtimes find the registry: an absolute DRIFTLOOP_HOME (the server
    runs in its own working directory), the tracking URI, and MLflow's own
    MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI: MLflow 3.17 resolves ``models:/`` URIs inside
    ``download_artifacts`` with the global registry URI even when one is passed in."""
    state = state or StateSettings()
    uri = state.tracking_uri()
    return {
        "DRIFTLOOP_HOME": str(state.resolved_home()),
        "DRIFTLOOP_MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
    }
