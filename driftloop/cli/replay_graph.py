"""What the live replay serves and how its workers are set: a SeldonDeployment generated for the data's
features and model (one model node; predictors ``main`` 100 % and ``canary`` 0 % at rest, as
``manifests/pump-bearing-temp-canary.yaml``), the node's ``model-settings.json`` for the local runtime,
and the workers' settings on top of the demo's (``demo_loop.worker_env``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "replay"
DEPLOYMENT = "replay"
MODEL_NAME = "replay-model"
NODE = "model"
RUNTIME = "driftloop_servers.model_runtime.IncrementalModelRuntime"


def deployment(request_log_topic: str) -> dict[str, Any]:
    """The SeldonDeployment: the champion on ``main`` (100 %) and ``canary`` (0 %), every node logged."""
    graph = {
        "name": NODE,
        "type": "MODEL",
        "endpoint": {"type": "REST"},
        "modelUri": f"models:/{MODEL_NAME}@champion",
        "logger": {"mode": "all"},
        "children": [],
    }
    containers = [
        {
            "spec": {
                "containers": [
                    {
                        "name": NODE,
                        "image": "seldonio/mlserver:1.7.1",
                        "env": [
                            {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": RUNTIME},
                            {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
                        ],
                    }
                ]
            }
        }
    ]
    logger = {
        "env": [
            {"name": "LOGGER_KAFKA_BROKER", "value": "plant-kafka-bootstrap.kafka:9092"},
            {"name": "LOGGER_KAFKA_TOPIC", "value": request_log_topic},
        ]
    }
    predictors = [
        {
            "name": name,
            "replicas": 1,
            "traffic": traffic,
            "svcOrchSpec": logger,
            "componentSpecs": containers,
            "graph": graph,
        }
        for name, traffic in (("main", 100), ("canary", 0))
    ]
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
        "spec": {"protocol": "v2", "transport": "rest", "predictors": predictors},
    }


def write_serving(folder: Path, request_log_topic: str, feature_names: Sequence[str]) -> tuple[Path, Path]:
    """The manifest and the model repository (``<folder>/models/<node>/model-settings.json``)."""
    manifest = folder / "replay-canary.yaml"
    manifest.write_text(yaml.safe_dump(deployment(request_log_topic), sort_keys=False))
    models = folder / "models"
    (models / NODE).mkdir(parents=True, exist_ok=True)
    settings = {
        "name": NODE,
        "implementation": RUNTIME,
        "parameters": {
            "uri": f"models:/{MODEL_NAME}@champion",
            "extra": {"feature_names": list(feature_names), "carry_tensors": []},
        },
    }
    (models / NODE / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return manifest, models


# A replay runs in accelerated time (hundreds of rows a second): the trainer may cut a candidate every
# 5 s once 100 labels arrived, and on degradation too (a plant's data may drift in its target only,
# which the monitor's input test cannot see).
REPLAY_POLICY = {
    "DRIFTLOOP_TRAINER_POLICY__MIN_EXAMPLES": "100",
    "DRIFTLOOP_TRAINER_POLICY__MIN_INTERVAL_S": "5",
    "DRIFTLOOP_TRAINER_POLICY__DRIFT_MIN_EXAMPLES": "100",
    "DRIFTLOOP_TRAINER_POLICY__DEGRADATION_ENABLED": "true",
    "DRIFTLOOP_TRAINER_POLICY__DEGRADATION_WINDOW": "200",
    "DRIFTLOOP_TRAINER_POLICY__DEGRADATION_MIN_EXAMPLES": "50",
}


def worker_settings(topics: dict[str, str], suffix: str, loss_bound: float | None) -> dict[str, str]:
    """The demo's worker settings, pointed at this deployment and model; every feature watched for
    drift; a regressor's validation losses clipped at ``loss_bound`` (the training targets' range)."""
    from driftloop.cli.demo_loop import worker_env

    env = worker_env(topics, suffix)
    env.update(REPLAY_POLICY)
    for worker in ("TRAINER", "VALIDATOR", "MONITOR", "ROLLOUT"):
        env[f"DRIFTLOOP_{worker}_MODEL_NAME"] = MODEL_NAME
    env["DRIFTLOOP_MONITOR_MODEL_NODE"] = NODE
    env["DRIFTLOOP_MONITOR_EXCLUDE_FEATURES"] = "[]"
    env["DRIFTLOOP_ROLLOUT_MODEL_NODE"] = NODE
    env["DRIFTLOOP_ROLLOUT_NAMESPACE"] = NAMESPACE
    env["DRIFTLOOP_ROLLOUT_DEPLOYMENT"] = DEPLOYMENT
    if loss_bound is None:
        env.pop("DRIFTLOOP_VALIDATION_LOSS_BOUND", None)
    else:
        env["DRIFTLOOP_VALIDATION_LOSS_BOUND"] = f"{loss_bound:.6g}"
    return env
