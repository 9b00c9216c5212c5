"""Candidate churn on real parts: a real MLflow sqlite registry in tmp and the embedded event log. Drift
arrives in every window; while challenger v2 awaits its verdict no candidate is cut, the verdict lets
the held one through, and a challenger never judged is passed over after ``hold_max_s``."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftloop_feedback.learn.hold import VERDICT_TAG
from driftloop_feedback.learn.worker import TrainerWorker

from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.learning.registration import model_pip_requirements
from driftloop.registry import MlflowRegistry, RegistryError
from tests.learn.drifting_plant import DriftingPlant, hold_settings, metric
from tests.learn.helpers import FakeClock, regression_rows, regressor_champion

pytestmark = pytest.mark.integration
NAME = "pump-bearing-temp"


def _versions(registry: MlflowRegistry) -> int:
    """How many versions exist (they are numbered from 1)."""
    n = 0
    while True:
        try:
            registry.get_version(NAME, n + 1)
        except RegistryError:
            return n
        n += 1


def test_a_pending_challenger_holds_drift_candidates_until_its_verdict_or_hold_max_s(tmp_path: Path) -> None:
    registry = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    X, _ = regression_rows(5, seed=0)
    registry.register_sklearn_model(
        NAME,
        regressor_champion(),
        input_example=X,
        pip_requirements=model_pip_requirements(),
        metrics={"val_mae": 0.2},
        alias="champion",
    )
    log, clock = EmbeddedEventLog(tmp_path / "eventlog"), FakeClock()
    worker = TrainerWorker(log, registry, hold_settings(tmp_path / "trainer", hold_max_s=120.0), clock=clock)
    plant = DriftingPlant(log, clock)
    try:
        for _ in range(5):
            plant.round(worker)
            if worker.state is not None and worker.state.last_candidate_version is not None:
                break
        assert registry.get_alias(NAME, "challenger").version == 2, worker.status

        # drift in every window, v2 not judged yet: nothing new is cut
        for _ in range(10):  # 60 s; before: a candidate every round
            plant.round(worker)
        assert _versions(registry) == 2 and registry.get_alias(NAME, "challenger").version == 2
        assert metric(worker, "driftloop_trainer_candidates_held") == 1
        assert "challenger v2 awaits its validation verdict" in worker.status

        # the validator writes its verdict: the held drift candidate is cut at the next look
        registry.set_version_tags(NAME, 2, {VERDICT_TAG: "fail"})
        clock.advance(5.0)
        worker.step()
        assert registry.get_alias(NAME, "challenger").version == 3
        assert registry.version_tags(NAME, 3)["driftloop.trigger"] == "drift"

        # v3 is never judged (a dead validator): held for hold_max_s, then cut anyway
        for _ in range(19):  # 114 s
            plant.round(worker)
        assert _versions(registry) == 3
        for _ in range(3):
            plant.round(worker)
        assert _versions(registry) == 4 and registry.get_alias(NAME, "challenger").version == 4
        assert metric(worker, "driftloop_trainer_hold_timeouts_total") == 1
        assert metric(worker, "driftloop_trainer_hold_check_errors_total") == 0
    finally:
        worker.close()
        log.close()
