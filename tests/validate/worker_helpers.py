"""Shared pieces of the validator worker tests: labelled rows, fitted models, an in-memory registry."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
from driftloop_feedback.validate.worker import ValidatorWorker
from sklearn.linear_model import LinearRegression

from driftloop.eventlog import EventLog
from driftloop.registry import ModelVersionRef, RegistryError

TOPIC = "driftloop.labelled"
NAME = "pump-bearing-temp"
VERDICT = "driftloop.validation.verdict"


def labelled(
    n: int, seed: int, slope: float = 2.0, *, start: int = 0, prefix: str = "r"
) -> list[LabelledExample]:
    """y = slope * x0 - x1 + noise (slope 2: the regime the 'better' challenger learned)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = slope * X[:, 0] - X[:, 1] + rng.normal(0, 0.5, n)
    return [
        LabelledExample(
            example_id=f"{prefix}{i}:0",
            request_id=f"{prefix}{i}",
            row=0,
            features=(float(x[0]), float(x[1])),
            prediction=0.0,
            truth=float(t),
            endpoint="main",
            model_version="1",
            event_time=1_700_000_000.0 + i,
            truth_time=1_700_000_000.0 + i + 1800,
            joined_by="request",
        )
        for i, (x, t) in enumerate(zip(X, y, strict=True), start=start)
    ]


def regressor(slope: float, seed: int) -> LinearRegression:
    rows = labelled(400, seed, slope)
    return LinearRegression().fit([r.features for r in rows], [r.truth for r in rows])


def produce(log: EventLog, values: list[bytes]) -> None:
    log.create_topic(TOPIC, 1)
    producer = log.producer()
    for value in values:
        producer.send(TOPIC, value, key=b"k")
    producer.flush()


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
    params: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeRegistry:
    """The validator's registry port in memory; ``unreachable`` makes every call fail as a down server.
    ``tag_writes`` records every (version, key, value) written, to tell a verdict written twice."""

    versions: dict[int, FakeVersion] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    run_metrics: dict[str, list[tuple[str, float, int]]] = field(default_factory=dict)
    tag_writes: list[tuple[int, str, str]] = field(default_factory=list)
    unreachable: bool = False
    calls: int = 0

    def _check(self) -> None:
        self.calls += 1
        if self.unreachable:
            raise ConnectionError("MLflow at http://127.0.0.1:5000 refused the connection")

    def add(self, model: Any, *, alias: str | None = None, params: dict[str, str] | None = None) -> int:
        version = len(self.versions) + 1
        ref = ModelVersionRef(NAME, version, f"run{version}", f"mem://{version}")
        self.versions[version] = FakeVersion(ref, pickle.dumps(model), params or {})
        if alias:
            self.aliases[alias] = version
        return version

    def verdicts_written(self, version: int) -> list[str]:
        return [v for ver, k, v in self.tag_writes if ver == version and k == VERDICT]

    def get_alias(self, name: str, alias: str) -> ModelVersionRef:
        self._check()
        if alias not in self.aliases:
            raise RegistryError(f"no version of {name!r} has alias {alias!r}")
        return self.versions[self.aliases[alias]].ref

    def load_sklearn_model(self, uri: str) -> Any:
        self._check()
        return pickle.loads(self.versions[int(uri.rsplit("/", 1)[1])].model_pickle)

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
        self._check()
        version = next(v for v in self.versions.values() if v.ref.run_id == run_id)
        return dict(version.params), {}, {}

    def version_tags(self, name: str, version: int) -> dict[str, str]:
        self._check()
        return dict(self.versions[version].tags)

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        self._check()
        self.versions[version].tags.update(tags)
        self.tag_writes.extend((version, k, v) for k, v in tags.items())

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self._check()
        self.run_metrics.setdefault(run_id, []).extend((k, v, step) for k, v in metrics.items())


def make_worker(
    log: EventLog, registry: FakeRegistry, clock: FakeClock, state_dir: Path, **validation: Any
) -> ValidatorWorker:
    settings = ValidatorSettings(
        state_dir=state_dir,
        poll_timeout_s=0.0,
        poll_max_records=50,
        registry_poll_s=5.0,
        registry_retry_s=2.0,
        registry_retry_max_s=16.0,
        topic_retry_s=5.0,
        state_interval_s=1.0,
    )
    values: dict[str, Any] = {"loss_bound": 5.0, "batch_size": 16, **validation}
    return ValidatorWorker(log, registry, settings, ValidationSettings(**values), clock=clock)


def run_until(worker: ValidatorWorker, clock: FakeClock, done: Callable[[], bool], steps: int = 300) -> None:
    for _ in range(steps):
        worker.step()
        if done():
            return
        clock.advance(1.0)
    raise AssertionError(f"not done after {steps} steps: {worker.status}")


def metric(worker: ValidatorWorker, name: str, labels: dict[str, str] | None = None) -> float:
    value = worker.metrics.registry.get_sample_value(name, labels or {})
    assert value is not None, name
    return value
