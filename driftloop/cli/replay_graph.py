"""What the live replay serves and how its workers are set: a SeldonDeployment generated for the data's
features and model (an outlier node before the model node, as ``manifests/pump-bearing-temp-canary.yaml``;
predictors ``main`` 100 % and ``canary`` 0 % at rest), the nodes' ``model-settings.json`` for the local
runtime, the outlier node's detector (fitted on the training part's inputs as ``driftloop train`` fits
the pump's, registered as the demo registers it), and the workers' settings on top of the demo's
(``demo_loop.worker_env``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from driftloop.registry import MlflowRegistry

NAMESPACE = "replay"
DEPLOYMENT = "replay"
MODEL_NAME = "replay-model"
NODE = "model"
RUNTIME = "driftloop_servers.model_runtime.IncrementalModelRuntime"
# the outlier node: its flags and scores ride with each row to the model node, which carries them into
# its response (the request log then holds them for the drift monitor's outlier-rate alarm)
OUTLIER_NODE = "outlier"
OUTLIER_NAME = f"{MODEL_NAME}-outlier"
DRIFT_NAME = f"{MODEL_NAME}-drift"  # registered beside it: the monitor's fallback reference
OUTLIER_RUNTIME = "driftloop_servers.outlier_runtime.OutlierRuntime"
OUTLIER_FLAG, OUTLIER_SCORE = "outlier_flag", "outlier_score"  # the outlier runtime's outputs


def _node(name: str, kind: str, uri: str, children: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "endpoint": {"type": "REST"},
        "modelUri": uri,
        "logger": {"mode": "all"},
        "children": children,
    }


def _container(name: str, runtime: str) -> dict[str, Any]:
    env = [
        {"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": runtime},
        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"},
    ]
    return {"name": name, "image": "seldonio/mlserver:1.7.1", "env": env}


def deployment(request_log_topic: str, *, outlier: bool = True) -> dict[str, Any]:
    """The SeldonDeployment: the champion on ``main`` (100 %) and ``canary`` (0 %), every node logged;
    with ``outlier``, the outlier node (a TRANSFORMER on the outlier detector's @champion) first."""
    graph = _node(NODE, "MODEL", f"models:/{MODEL_NAME}@champion", [])
    containers = [_container(NODE, RUNTIME)]
    if outlier:
        graph = _node(OUTLIER_NODE, "TRANSFORMER", f"models:/{OUTLIER_NAME}@champion", [graph])
        containers.insert(0, _container(OUTLIER_NODE, OUTLIER_RUNTIME))
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
            "componentSpecs": [{"spec": {"containers": containers}}],
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


def write_serving(
    folder: Path,
    request_log_topic: str,
    feature_names: Sequence[str],
    *,
    outlier: bool = True,
    online: bool = False,
) -> tuple[Path, Path]:
    """The manifest and the model repository (``<folder>/models/<node>/model-settings.json``); with
    ``online``, the model node's learn route is on (``parameters.extra.online_learning``)."""
    manifest = folder / "replay-canary.yaml"
    manifest.write_text(yaml.safe_dump(deployment(request_log_topic, outlier=outlier), sort_keys=False))
    models = folder / "models"
    carry = [OUTLIER_FLAG, OUTLIER_SCORE] if outlier else []
    model_extra: dict[str, Any] = {"carry_tensors": carry, **({"online_learning": True} if online else {})}
    nodes = {NODE: (RUNTIME, MODEL_NAME, model_extra)}
    if outlier:
        nodes[OUTLIER_NODE] = (OUTLIER_RUNTIME, OUTLIER_NAME, {})
    for node, (runtime, name, extra) in nodes.items():
        settings = {
            "name": node,
            "implementation": runtime,
            "parameters": {
                "uri": f"models:/{name}@champion",
                "extra": {"feature_names": list(feature_names), **extra},
            },
        }
        (models / node).mkdir(parents=True, exist_ok=True)
        (models / node / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return manifest, models


@dataclass(frozen=True)
class ReplayDetectors:
    """The outlier node's detector and the drift detector of the replay's training part (what
    ``registration.publish_detectors`` registers)."""

    outlier_detector: Any
    drift_detector: Any
    reference: np.ndarray
    feature_names: list[str]


def fit_and_publish_detectors(
    registry: MlflowRegistry, rows: np.ndarray, feature_names: Sequence[str]
) -> ReplayDetectors:
    """Fit both detectors on ``rows`` (the training part's inputs) with the trainer's defaults
    (``TrainingSettings``: kind, threshold quantile, reference rows, trim; so the outlier node flags about
    the monitor's default base rate, 0.025, of unchanged rows) and register them as the demo registers
    the pump's: ``replay-model-outlier`` / ``replay-model-drift`` @champion."""
    from driftloop.learning.registration import publish_detectors as publish
    from driftloop.learning.training import TrainingSettings, fit_detectors

    outlier, drift, reference = fit_detectors(np.asarray(rows, dtype=float), TrainingSettings())
    detectors = ReplayDetectors(outlier, drift, reference, list(feature_names))
    publish(detectors, registry, outlier_name=OUTLIER_NAME, drift_name=DRIFT_NAME)
    return detectors


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


# a replay's rows are one plant's time series in time order: KS p-values for serially dependent rows,
# each window tested against the rows just before it, in the monitor's default 500-row windows (the
# demo's 200 rows suit its 3-minute run); docs/drift-monitor.md, "Time series"
REPLAY_MONITOR = {
    "DRIFTLOOP_MONITOR_SERIAL": "ar1",
    "DRIFTLOOP_MONITOR_REFERENCE": "recent",
    "DRIFTLOOP_MONITOR_WINDOW_ROWS": "500",
}

# the drift monitor's settings a user may set in the replay's environment (DRIFTLOOP_MONITOR_<NAME>);
# they win over the replay's own
MONITOR_TUNABLES = (
    "BACKEND",
    "TEST",
    "CORRECTION",
    "ALPHA",
    "SERIAL",
    "REFERENCE",
    "RECENT_ROWS",
    "WINDOW_ROWS",
    "WINDOW_S",
    "MIN_ROWS",
    "OUTLIER_ALARM_ALPHA",
    "OUTLIER_BASE_RATE",
    "EXCLUDE_FEATURES",
)


def check_monitor_settings(env: Mapping[str, str]) -> None:
    """Refuse (``ReplayError``, naming the variable) monitor tunables in ``env`` the monitor would
    refuse at its start, so a bad ``DRIFTLOOP_MONITOR_*`` stops the replay before anything runs."""
    from driftloop_feedback.monitor.settings import MonitorSettings
    from pydantic import ValidationError

    from driftloop.replay.errors import ReplayError

    values: dict[str, object] = {}
    for name in MONITOR_TUNABLES:
        key = f"DRIFTLOOP_MONITOR_{name}"
        if key not in env:
            continue
        try:
            values[name.lower()] = json.loads(env[key]) if name == "EXCLUDE_FEATURES" else env[key]
        except json.JSONDecodeError:
            raise ReplayError(f"{key}={env[key]!r} is not a JSON list, e.g. '[\"hour_sin\"]'") from None
    try:
        MonitorSettings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        key = f"DRIFTLOOP_MONITOR_{where.upper()}" if where else "the drift monitor's settings"
        shown = f"={env[key]!r}" if key in env else ""
        raise ReplayError(f"{key}{shown}: {first['msg']}") from None


def worker_settings(
    topics: dict[str, str], suffix: str, loss_bound: float | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The demo's worker settings, pointed at this deployment and model (the monitor reads the model
    node's requests: features and the outlier node's flags; the outlier-rate alarm's base rate is the
    monitor's default, the trainer's); every feature watched for drift with ``REPLAY_MONITOR``'s settings
    for a time series; a regressor's validation losses clipped at ``loss_bound`` (the training targets'
    range). The monitor's ``MONITOR_TUNABLES`` set in ``environ`` (default: this process's) win."""
    from driftloop.cli.demo_loop import worker_env

    env = worker_env(topics, suffix)
    env.update(REPLAY_POLICY)
    for worker in ("TRAINER", "VALIDATOR", "MONITOR", "ROLLOUT"):
        env[f"DRIFTLOOP_{worker}_MODEL_NAME"] = MODEL_NAME
    env["DRIFTLOOP_MONITOR_MODEL_NODE"] = NODE  # its logged request carries the outlier node's outputs
    env["DRIFTLOOP_MONITOR_OUTLIER_FLAG_TENSOR"] = OUTLIER_FLAG
    env["DRIFTLOOP_MONITOR_FALLBACK_DRIFT_MODEL"] = DRIFT_NAME
    env["DRIFTLOOP_MONITOR_EXCLUDE_FEATURES"] = "[]"
    env.update(REPLAY_MONITOR)
    environ = os.environ if environ is None else environ
    for name in MONITOR_TUNABLES:
        key = f"DRIFTLOOP_MONITOR_{name}"
        if key in environ:
            env[key] = environ[key]
    env["DRIFTLOOP_ROLLOUT_MODEL_NODE"] = NODE
    env["DRIFTLOOP_ROLLOUT_NAMESPACE"] = NAMESPACE
    env["DRIFTLOOP_ROLLOUT_DEPLOYMENT"] = DEPLOYMENT
    if loss_bound is None:
        env.pop("DRIFTLOOP_VALIDATION_LOSS_BOUND", None)
    else:
        env["DRIFTLOOP_VALIDATION_LOSS_BOUND"] = f"{loss_bound:.6g}"
    return env
