"""SeldonDeployment documents for the Kubernetes tests: a valid canary of the pump graph to mutate."""

from __future__ import annotations

import copy
from typing import Any


def _graph(model_uri: str) -> dict[str, Any]:
    return {
        "name": "bearing-outlier",
        "type": "TRANSFORMER",
        "endpoint": {"type": "REST"},
        "modelUri": "models:/pump-bearing-temp-outlier@champion",
        "logger": {"mode": "all"},
        "children": [
            {
                "name": "bearing-temp",
                "type": "MODEL",
                "endpoint": {"type": "REST"},
                "modelUri": model_uri,
                "logger": {"mode": "all"},
                "children": [],
            }
        ],
    }


def _predictor(name: str, traffic: int, model_uri: str) -> dict[str, Any]:
    return {
        "name": name,
        "replicas": 1,
        "traffic": traffic,
        "componentSpecs": [
            {
                "spec": {
                    "containers": [
                        {"name": "bearing-outlier", "image": "seldonio/mlserver:1.7.1"},
                        {"name": "bearing-temp", "image": "seldonio/mlserver:1.7.1"},
                    ]
                }
            }
        ],
        "graph": _graph(model_uri),
    }


def canary_sdep(name: str = "pump-bearing-temp") -> dict[str, Any]:
    """main (champion, 90) + canary (challenger, 10), protocol v2: valid for the API server and driftloop."""
    return copy.deepcopy(
        {
            "apiVersion": "machinelearning.seldon.io/v1",
            "kind": "SeldonDeployment",
            "metadata": {"name": name},
            "spec": {
                "protocol": "v2",
                "transport": "rest",
                "predictors": [
                    _predictor("main", 90, "models:/pump-bearing-temp@champion"),
                    _predictor("canary", 10, "models:/pump-bearing-temp@challenger"),
                ],
            },
        }
    )


def shadow_predictor(name: str) -> dict[str, Any]:
    predictor = _predictor(name, 0, "models:/pump-bearing-temp@challenger")
    del predictor["traffic"]
    predictor["shadow"] = True
    return predictor
