"""The traffic backend port: read a deployment's traffic split and model URIs, change either.

The local runtime's control API is one adapter (``local_backend.LocalControlBackend``); a Kubernetes
adapter (patching ``spec.predictors[].traffic`` and a node's ``modelUri`` of the SeldonDeployment) fits
the same Protocol. The controller never imports the runtime it drives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class DeploymentState:
    """What the deployment serves now: weights of the non-shadow predictors, and each node's model URI."""

    namespace: str
    name: str
    traffic: Mapping[str, int]  # predictor -> weight (percent); shadows are left out
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # predictor -> node -> model URI

    def weight(self, predictor: str) -> int:
        return int(self.traffic.get(predictor, 0))

    def model_uri(self, predictor: str, node: str) -> str | None:
        return self.models.get(predictor, {}).get(node)


class TrafficBackend(Protocol):
    def read(self, namespace: str, name: str) -> DeploymentState:
        """The deployment as it is now (``BackendError`` if it cannot be read)."""
        ...

    def set_traffic(self, namespace: str, name: str, weights: Mapping[str, int]) -> DeploymentState:
        """New weights of the non-shadow predictors (sum 100; those left out get 0), applied atomically."""
        ...

    def set_model(self, namespace: str, name: str, predictor: str, node: str, model_uri: str) -> None:
        """Serve ``model_uri`` on ``node`` of ``predictor``; the old model answers until the new one is
        ready."""
        ...
