"""The whole path on real parts: the embedded event log, a real MLflow sqlite registry in tmp, a
regressor and a classifier champion; each candidate's run and version carry what docs/trainer.md lists."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from driftloop_feedback.learn.settings import CandidatePolicySettings, TrainerSettings
from driftloop_feedback.learn.worker import TrainerWorker

from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.learning.registration import model_pip_requirements
from driftloop.references import load_reference
from driftloop.registry import MlflowRegistry
from tests.learn.helpers import (
    classification_rows,
    examples,
    incremental_classifier_champion,
    regression_rows,
    regressor_champion,
)

pytestmark = pytest.mark.integration
TOPIC = "driftloop.labelled"


@dataclass
class Outcome:
    registry: MlflowRegistry
    name: str
    champion: Any
    version: int
    run: Any
    version_tags: dict[str, str]
    worker: TrainerWorker
    ids: list[str]


def _run_path(
    tmp: Path, name: str, champion: Any, X: np.ndarray, y: np.ndarray, val: dict[str, float]
) -> Outcome:
    from mlflow import MlflowClient

    registry = MlflowRegistry(f"sqlite:///{tmp / 'mlflow.db'}", tmp / "mlartifacts")
    registry.register_sklearn_model(
        name,
        champion,
        input_example=X[:5],
        pip_requirements=model_pip_requirements(),
        metrics=val,
        tags={"driftloop.feature_names": "speed,load,temp"},
        alias="champion",
    )
    log = EmbeddedEventLog(tmp / "eventlog")
    log.create_topic(TOPIC, 2)
    producer = log.producer()
    labelled = examples(X, y)
    for e in labelled:
        producer.send(TOPIC, e.encode(), key=e.request_id.encode())
    producer.flush()
    settings = TrainerSettings(
        model_name=name,
        state_dir=tmp / "trainer",
        batch_size=50,
        poll_timeout_s=0.05,
        policy=CandidatePolicySettings(
            min_examples=50,
            min_interval_s=0,
            every_n_examples=len(X),
            every_s=None,
            degradation_enabled=False,
        ),
    )
    worker = TrainerWorker(log, registry, settings)
    for _ in range(300):
        worker.step()
        if worker.state is not None and worker.state.last_candidate_version is not None:
            break
    assert worker.state is not None and worker.state.last_candidate_version is not None, worker.status
    version = worker.state.last_candidate_version
    ref = registry.get_version(name, version)
    client = MlflowClient(tracking_uri=registry.tracking_uri, registry_uri=registry.tracking_uri)
    outcome = Outcome(
        registry,
        name,
        champion,
        version,
        client.get_run(ref.run_id),
        registry.version_tags(name, version),
        worker,
        [e.example_id for e in labelled],
    )
    worker.close()
    log.close()
    return outcome


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    X, y = regression_rows(300, seed=11, shift=1.0)
    yield _run_path(
        tmp_path_factory.mktemp("reg"), "pump-bearing-temp", regressor_champion(), X, y, {"val_mae": 0.1}
    )


@pytest.fixture(scope="module")
def classification(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    names = ("ok", "warm", "hot")  # string labels, IncrementalClassifier (what MLServer serves)
    X, y = classification_rows(300, seed=12, names=names)
    champion = incremental_classifier_champion(names)
    yield _run_path(tmp_path_factory.mktemp("clf"), "line-quality", champion, X, y, {"val_accuracy": 0.8})


@pytest.fixture(params=["regression", "classification"])
def outcome(request: pytest.FixtureRequest) -> Outcome:
    value: Outcome = request.getfixturevalue(request.param)
    return value


def test_the_run_holds_estimator_policy_and_data_window(outcome: Outcome) -> None:
    params = outcome.run.data.params
    cls = type(outcome.champion)
    assert params["estimator"] == f"{cls.__module__}.{cls.__qualname__}"
    for key, value in outcome.champion.get_params(deep=False).items():
        assert params[f"estimator.{key}"] == str(value)
    assert params["policy.min_examples"] == "50" and params["policy.every_n_examples"] == "300"
    assert params["trainer.replay_ratio"] == "0.25"
    assert params["window.count"] == "300"
    assert (
        params["window.first_example_id"] in outcome.ids and params["window.last_example_id"] in outcome.ids
    )
    assert float(params["window.event_time_min"]) == 1_700_000_000.0
    assert float(params["window.event_time_max"]) == 1_700_000_299.0
    spans = {k: v for k, v in params.items() if k.startswith("window.offsets.")}
    assert set(spans) == {f"window.offsets.{TOPIC}/0", f"window.offsets.{TOPIC}/1"}
    assert sum(int(v.split("-")[1]) - int(v.split("-")[0]) for v in spans.values()) == 300


def test_the_run_holds_both_prequential_errors(outcome: Outcome) -> None:
    metrics = outcome.run.data.metrics
    assert metrics["prequential_error_candidate"] >= 0 and metrics["prequential_error_champion"] >= 0
    assert metrics["window_count"] == 300
    state = outcome.worker.state
    assert state is not None
    assert metrics["examples_learned_total"] == 300


def test_version_and_run_tags_link_parent_and_trigger_and_alias_moved(outcome: Outcome) -> None:
    for tags in (outcome.version_tags, outcome.run.data.tags):
        assert tags["driftloop.parent_version"] == "1"
        assert tags["driftloop.trigger"] == "schedule"
        assert tags["driftloop.kind"] == "candidate"
    assert outcome.registry.get_alias(outcome.name, "challenger").version == outcome.version == 2
    assert outcome.registry.get_alias(outcome.name, "champion").version == 1  # never promoted


def test_the_model_folder_has_signature_pickle_explicit_requirements(
    outcome: Outcome, tmp_path: Path
) -> None:
    folder = outcome.registry.download(f"models:/{outcome.name}/{outcome.version}", tmp_path)
    mlmodel = (folder / "MLmodel").read_text()
    assert "signature:" in mlmodel and '"shape": [-1, 3]' in mlmodel
    assert "serialization_format: pickle" in mlmodel
    requirements = (folder / "requirements.txt").read_text().split()
    assert sorted(r for r in requirements if not r.startswith("mlflow==")) == sorted(model_pip_requirements())
    model = outcome.registry.load_sklearn_model(f"models:/{outcome.name}@challenger")
    X = np.zeros((4, 3))
    state = outcome.worker.state
    assert state is not None
    np.testing.assert_array_equal(model.predict(X), state.challenger.model.predict(X))


def test_the_candidate_carries_its_drift_reference(outcome: Outcome) -> None:
    reference = load_reference(outcome.registry, outcome.name, outcome.version)
    assert reference.feature_names == ("speed", "load", "temp")
    assert reference.data.shape == (300, 3)


def test_the_classifier_kept_its_declared_classes(classification: Outcome) -> None:
    state = classification.worker.state
    assert state is not None
    np.testing.assert_array_equal(state.challenger.model.classes_, classification.champion.classes_)
    assert state.policy.degradation.baseline == pytest.approx(0.2)
