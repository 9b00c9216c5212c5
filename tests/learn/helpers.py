"""Shared pieces of the trainer tests: labelled examples, small champions, an in-memory registry."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from driftloop_feedback.records import LabelledExample
from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor
from sklearn.linear_model import SGDClassifier

from driftloop.registry import ModelVersionRef, RegistryError

F = 3
WEIGHTS = np.array([2.0, -1.0, 0.5])


def regression_rows(n: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, F))
    return X, 40.0 + X @ WEIGHTS + shift + rng.normal(scale=0.1, size=n)


def classification_rows(
    n: int, seed: int, names: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Three classes: 0, 1, 2, or ``names[0..2]``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, F))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return (X, np.asarray(names)[y]) if names else (X, y)


def regressor_champion(seed: int = 0) -> IncrementalRegressor:
    X, y = regression_rows(400, seed)
    return IncrementalRegressor(random_state=seed, epochs=3).fit(X, y)


def classifier_champion(seed: int = 0) -> SGDClassifier:
    X, y = classification_rows(400, seed)
    return SGDClassifier(loss="log_loss", random_state=seed).fit(X, y)


def incremental_classifier_champion(names: tuple[str, ...], seed: int = 0) -> IncrementalClassifier:
    X, y = classification_rows(400, seed, names)
    return IncrementalClassifier(random_state=seed, epochs=3).fit(X, y)


def examples(
    X: np.ndarray,
    y: np.ndarray,
    *,
    start: int = 0,
    prefix: str = "r",
    predictions: np.ndarray | None = None,
    model_version: str = "0",
) -> list[LabelledExample]:
    """Labelled examples of rows ``X`` with truths ``y``. By default served by version "0" (no
    champion of the tests), predicting 0.0: the trainer asks its champion for its predictions. With
    ``predictions`` and the champion's ``model_version`` they are the champion's served answers."""
    out = []
    for i, (row, target) in enumerate(zip(X, y.tolist(), strict=True), start=start):
        out.append(
            LabelledExample(
                example_id=f"{prefix}{i}:0",
                request_id=f"{prefix}{i}",
                row=0,
                features=tuple(float(v) for v in row),
                prediction=0.0 if predictions is None else predictions[i - start].item(),
                truth=target if isinstance(target, str) else float(target),
                endpoint="main",
                model_version=model_version,
                event_time=1_700_000_000.0 + i,
                truth_time=1_700_000_000.0 + i + 1800,
                joined_by="request",
            )
        )
    return out


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeVersion:
    ref: ModelVersionRef
    model_pickle: bytes
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    version_tags: dict[str, str]


@dataclass
class FakeRegistry:
    """The trainer's registry port in memory; ``unreachable`` makes every call fail as a down server."""

    name: str = "pump-bearing-temp"
    versions: dict[int, FakeVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    artifacts: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    unreachable: bool = False
    registration_down: bool = False  # registering fails, reading works
    calls: int = 0

    def _check(self) -> None:
        self.calls += 1
        if self.unreachable:
            raise ConnectionError("MLflow at http://127.0.0.1:5000 refused the connection")

    def add(self, model: Any, *, metrics: dict[str, float] | None = None, alias: str | None = None) -> int:
        version = len(self.versions) + 1
        ref = ModelVersionRef(self.name, version, f"run{version}", f"mem://{version}")
        self.versions[version] = FakeVersion(ref, pickle.dumps(model), {}, metrics or {}, {}, {})
        if alias:
            self.aliases[alias] = version
        return version

    def get_alias(self, name: str, alias: str) -> ModelVersionRef:
        self._check()
        if alias not in self.aliases:
            raise RegistryError(f"no version of {name!r} has alias {alias!r}")
        return self.versions[self.aliases[alias]].ref

    def load_sklearn_model(self, uri: str) -> Any:
        self._check()
        version = int(uri.rsplit("/", 1)[1])
        return pickle.loads(self.versions[version].model_pickle)

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
        self._check()
        version = next(v for v in self.versions.values() if v.ref.run_id == run_id)
        return {}, dict(version.metrics), {}

    def _check_registration(self) -> None:
        self._check()
        if self.registration_down:
            raise ConnectionError("MLflow at http://127.0.0.1:5000 refused the connection")

    def register_sklearn_model(self, name: str, model: Any, **kwargs: Any) -> ModelVersionRef:
        self._check_registration()
        version = len(self.versions) + 1
        ref = ModelVersionRef(name, version, f"run{version}", f"mem://{version}")
        self.versions[version] = FakeVersion(
            ref,
            pickle.dumps(model),
            dict(kwargs.get("params") or {}),
            dict(kwargs.get("metrics") or {}),
            dict(kwargs.get("tags") or {}),
            dict(kwargs.get("version_tags") or {}),
        )
        return ref

    def find_version_by_tag(self, name: str, key: str, value: str) -> ModelVersionRef | None:
        self._check_registration()
        for v in self.versions.values():
            if v.version_tags.get(key) == value:
                return v.ref
        return None

    def log_run_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        self._check()
        self.artifacts[(run_id, artifact_path)] = {f.name: f.read_bytes() for f in folder.iterdir()}

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self._check()
        self.aliases[alias] = version

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        self._check()
        if version not in self.versions:
            raise RegistryError(f"{name!r} has no version {version}")
        return dict(self.versions[version].version_tags)

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        """What the validator and the rollout controller write (a verdict, a rollout status)."""
        self._check()
        self.versions[version].version_tags.update(tags)
