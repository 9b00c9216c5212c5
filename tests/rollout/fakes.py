"""In-memory fakes of the controller's ports (traffic backend, registry, ingress metrics) and a clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.rollout.backend import DeploymentState
from driftloop_feedback.rollout.errors import BackendError
from driftloop_feedback.rollout.ops import PredictorCounts

from driftloop.eventlog import EventLog
from driftloop.registry import ModelVersionRef, RegistryError, parse_models_uri

MODEL = "pump-bearing-temp"


class FakeClock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> float:
        self.t += s
        return self.t


class FakeBackend:
    """The deployment: main + canary (+ shadow), one model node each; records every call."""

    def __init__(self, champion: int = 1, canary_weight: int = 0) -> None:
        node = "bearing-temp"
        self.traffic = {"main": 100 - canary_weight, "canary": canary_weight}
        self.models = {
            "main": {node: f"models:/{MODEL}@champion"},
            "canary": {node: f"models:/{MODEL}@challenger"},
            "shadow": {node: f"models:/{MODEL}@challenger"},
        }
        self.calls: list[tuple[str, Any]] = []
        self.fail_next: str | None = None  # "set_traffic" / "set_model": the next such call raises
        # called by set_model with (predictor, model_uri): e.g. advance the fake clock by a model's load time
        self.on_set_model: Callable[[str, str], object] | None = None

    def _maybe_fail(self, what: str) -> None:
        if self.fail_next == what:
            self.fail_next = None
            raise BackendError(f"{what} failed (injected)")

    def read(self, namespace: str, name: str) -> DeploymentState:
        return DeploymentState(
            namespace, name, dict(self.traffic), {p: dict(n) for p, n in self.models.items()}
        )

    def set_traffic(self, namespace: str, name: str, weights: Mapping[str, int]) -> DeploymentState:
        self._maybe_fail("set_traffic")
        assert sum(weights.values()) == 100
        self.traffic = {p: int(weights.get(p, 0)) for p in self.traffic}
        self.calls.append(("traffic", dict(self.traffic)))
        return self.read(namespace, name)

    def set_model(self, namespace: str, name: str, predictor: str, node: str, model_uri: str) -> None:
        self._maybe_fail("set_model")
        if self.on_set_model is not None:
            self.on_set_model(predictor, model_uri)
        self.models[predictor][node] = model_uri
        self.calls.append(("model", (predictor, model_uri, self.traffic.get(predictor, 0))))

    def canary_weights_seen(self) -> list[int]:
        return [c[1]["canary"] for c in self.calls if c[0] == "traffic"]


class Linear:
    """A fitted 'model': y = a * x0 + b."""

    n_features_in_ = 2

    def __init__(self, a: float = 1.0, b: float = 0.0) -> None:
        self.a, self.b = a, b

    def predict(self, X: Any) -> Any:
        return self.a * np.asarray(X, dtype=np.float64)[:, 0] + self.b


@dataclass
class FakeRegistry:
    models: dict[int, Any] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    tags: dict[int, dict[str, str]] = field(default_factory=dict)
    alias_moves: list[tuple[str, int]] = field(default_factory=list)
    failing: bool = False
    on_load: Callable[[str], object] | None = None  # called with the URI: e.g. advance the fake clock

    def add(self, version: int, model: Any, **tags: str) -> None:
        self.models[version] = model
        self.tags[version] = dict(tags)

    def get_alias(self, name: str, alias: str) -> ModelVersionRef:
        if self.failing:
            raise RegistryError("registry down (injected)")
        if alias not in self.aliases:
            raise RegistryError(f"no {alias}")
        v = self.aliases[alias]
        return ModelVersionRef(name, v, f"run-{v}", f"file:///{v}")

    def set_alias(self, name: str, alias: str, version: int) -> None:
        if self.failing:
            raise RegistryError("registry down (injected)")
        self.aliases[alias] = version
        self.alias_moves.append((alias, version))

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        return dict(self.tags[version])

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        if self.failing:
            raise RegistryError("registry down (injected)")
        self.tags[version].update(tags)

    def load_sklearn_model(self, uri: str) -> Any:
        if self.on_load is not None:
            self.on_load(uri)
        _, alias, version = parse_models_uri(uri)
        return self.models[self.aliases[alias] if alias else int(version or 0)]


class FakeOps:
    """Cumulative ingress counts the test moves forward."""

    def __init__(self) -> None:
        self.counts: dict[str, PredictorCounts] = {}

    def add(self, predictor: str, requests: int, errors: int = 0, latency_s: float = 0.002) -> None:
        old = self.counts.get(predictor, PredictorCounts())
        les = (0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, float("inf"))
        buckets = dict(old.buckets) or dict.fromkeys(les, 0.0)
        for le in les:
            if latency_s <= le:
                buckets[le] += requests
        self.counts[predictor] = PredictorCounts(old.requests + requests, old.errors + errors, buckets)

    def snapshot(self) -> dict[str, PredictorCounts]:
        return dict(self.counts)


class LabelledProducer:
    """Writes the joiner's labelled examples for the canary/main predictors."""

    def __init__(self, log: EventLog, topic: str = "driftloop.labelled") -> None:
        log.create_topic(topic, 1)
        self.topic = topic
        self.producer = log.producer()
        self.n = 0
        self.rng = np.random.default_rng(0)

    def rows(self, n: int, *, endpoint: str, version: int, served_error: float, noise: float = 0.1) -> None:
        """n rows whose truth is x0 (the champion Linear(1, 1) is off by 1) and whose served prediction is
        off by ``served_error`` (plus noise)."""
        for _ in range(n):
            x0 = float(self.rng.uniform(0, 10))
            served = x0 + served_error + float(self.rng.normal(0, noise))
            e = LabelledExample(
                f"r{self.n}:0",
                f"r{self.n}",
                0,
                (x0, 1.0),
                served,
                x0,
                endpoint,
                str(version),
                float(self.n),
                float(self.n) + 1.0,
                "request",
            )
            self.producer.send(self.topic, e.encode(), key=e.request_id.encode())
            self.n += 1
        self.producer.flush()
