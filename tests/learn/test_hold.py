"""Holding a due candidate while the previous challenger is still judged: the registry look, the
plain state with a fake clock, and the worker on the in-memory log with the in-memory registry."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from driftloop_feedback.learn import hold, policy
from driftloop_feedback.learn.cli import _progress
from driftloop_feedback.learn.hold import (
    ROLLOUT_IN_PLAY,
    ROLLOUT_STATUS_TAG,
    VERDICT_TAG,
    CandidateHold,
    HoldDecision,
    InPlay,
    Stage,
    look,
)
from driftloop_feedback.learn.worker import TrainerWorker

from driftloop.eventlog import MemoryEventLog
from tests.learn.drifting_plant import DriftingPlant, hold_settings, metric
from tests.learn.helpers import FakeClock, FakeRegistry, regressor_champion

NAME = "pump-bearing-temp"


@pytest.mark.parametrize("module", [hold, policy])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def test_the_tags_read_are_the_ones_the_validator_and_the_rollout_controller_write() -> None:
    from driftloop_feedback.rollout.controller import RETRIED_STATUSES, STATUS_TAG
    from driftloop_feedback.validate.verdict_writer import VERDICT_TAG as WRITTEN

    assert VERDICT_TAG == WRITTEN and ROLLOUT_STATUS_TAG == STATUS_TAG
    # a candidate the controller would still roll out, or is rolling out, is in play
    assert set(RETRIED_STATUSES) | {"progressing"} == set(ROLLOUT_IN_PLAY)


@pytest.mark.parametrize(
    ("tags", "stage"),
    [
        ({}, Stage.VALIDATION),
        ({VERDICT_TAG: "pass"}, Stage.ROLLOUT),
        ({VERDICT_TAG: "pass", ROLLOUT_STATUS_TAG: "progressing"}, Stage.ROLLOUT),
        ({VERDICT_TAG: "pass", ROLLOUT_STATUS_TAG: "interrupted"}, Stage.ROLLOUT),
        ({VERDICT_TAG: "pass", ROLLOUT_STATUS_TAG: "rejected"}, None),
        ({VERDICT_TAG: "pass", ROLLOUT_STATUS_TAG: "aborted"}, None),
        ({VERDICT_TAG: "fail"}, None),
        ({VERDICT_TAG: "inconclusive"}, None),
        ({VERDICT_TAG: "superseded"}, None),
    ],
)
def test_a_challenger_is_in_play_until_judged_and_its_rollout_concluded(
    tags: dict[str, str], stage: Stage | None
) -> None:
    registry = FakeRegistry()
    registry.add(regressor_champion(), alias="champion")
    registry.add(regressor_champion(), alias="challenger")
    registry.set_version_tags(NAME, 2, tags)
    seen = look(registry, NAME, "champion", "challenger")
    assert seen.champion == 1
    if stage is None:
        assert seen.in_play is None
    else:
        assert seen.in_play is not None and seen.in_play.version == 2 and seen.in_play.stage is stage


def test_no_challenger_or_a_promoted_one_is_nothing_in_play_and_errors_propagate() -> None:
    registry = FakeRegistry()
    registry.add(regressor_champion(), alias="champion")
    assert look(registry, NAME, "champion", "challenger").in_play is None  # nothing cut yet
    registry.add(regressor_champion(), alias="challenger")
    registry.aliases["champion"] = 2  # promoted
    assert look(registry, NAME, "champion", "challenger") == hold.Look(2, None)
    registry.unreachable = True
    with pytest.raises(ConnectionError):
        look(registry, NAME, "champion", "challenger")


def test_a_cut_is_in_play_itself_until_a_look_says_otherwise() -> None:
    state = CandidateHold()
    state.cut(now=10.0)
    assert state.in_play is not None and state.in_play.stage is Stage.REGISTRATION
    assert state.decide(12.0, hold_max_s=900.0) is HoldDecision.HOLD and state.held_since == 12.0
    assert not state.check_due(14.9, check_s=5.0) and state.check_due(15.0, check_s=5.0)
    assert state.decide(12.0, hold_max_s=0.0) is HoldDecision.CUT  # 0: never held
    state.observed(15.0, InPlay(3, Stage.VALIDATION, "awaits its validation verdict"))
    assert state.decide(911.9, hold_max_s=900.0) is HoldDecision.HOLD
    assert state.decide(912.0, hold_max_s=900.0) is HoldDecision.TIMEOUT  # since the first hold, 12.0
    state.release()
    assert state.held_since is None and state.held_for(1000.0) == 0.0


# -- the worker --------------------------------------------------------------------------------------
def _start(tmp_path: Path, **policy_: object) -> tuple[TrainerWorker, FakeRegistry, DriftingPlant]:
    log, registry, clock = MemoryEventLog(), FakeRegistry(), FakeClock()
    registry.add(regressor_champion(), metrics={"val_mae": 0.2}, alias="champion")
    worker = TrainerWorker(log, registry, hold_settings(tmp_path / "trainer", **policy_), clock=clock)
    plant = DriftingPlant(log, clock)
    for _ in range(5):
        plant.round(worker)
        if "challenger" in registry.aliases:
            break
    assert registry.aliases.get("challenger") == 2, worker.status
    return worker, registry, plant


def test_a_pending_challenger_holds_the_next_candidate_while_drift_keeps_arriving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("INFO", logger="driftloop_feedback.learn.worker")
    worker, registry, plant = _start(tmp_path)
    for _ in range(20):  # 120 s, a drift event and 100 rows every 6 s: one cut every round before
        plant.round(worker)
    assert len(registry.versions) == 2 and registry.aliases["challenger"] == 2
    assert worker.state is not None and worker.state.policy.drift_at_count is not None  # not forgotten
    assert metric(worker, "driftloop_trainer_candidates_held") == 1
    assert metric(worker, "driftloop_trainer_candidate_held_seconds") >= 110
    assert "challenger v2 awaits its validation verdict" in worker.status
    _progress(worker)
    assert (
        "(candidate held for 114 s: challenger v2 awaits its validation verdict)" in capsys.readouterr().out
    )
    said = "a drift candidate is due but held for 0 s: challenger v2 awaits its validation verdict"
    assert said in caplog.text and "held for 60 s: challenger v2" in caplog.text  # reminded every minute
    # the verdict is written: the held candidate is cut at the next look, without new rows
    registry.set_version_tags(NAME, 2, {VERDICT_TAG: "fail"})
    plant.clock.advance(5.0)
    worker.step()
    assert registry.aliases["challenger"] == 3
    assert registry.versions[3].version_tags["driftloop.trigger"] == "drift"
    assert registry.versions[3].params["window.count"] >= 2000  # everything learned while it waited
    assert metric(worker, "driftloop_trainer_candidates_held") == 0
    assert "the drift candidate held for 119 s is cut: the previous challenger is concluded" in caplog.text


def test_a_passed_challenger_holds_until_its_rollout_concludes(tmp_path: Path) -> None:
    worker, registry, plant = _start(tmp_path)
    registry.set_version_tags(NAME, 2, {VERDICT_TAG: "pass"})
    plant.round(worker)
    assert "passed validation; its rollout is not started yet" in worker.status
    registry.set_version_tags(NAME, 2, {ROLLOUT_STATUS_TAG: "progressing"})
    for _ in range(5):
        plant.round(worker)
    assert len(registry.versions) == 2 and "its rollout is progressing" in worker.status
    registry.set_version_tags(NAME, 2, {ROLLOUT_STATUS_TAG: "rejected"})
    plant.round(worker, rows=0)
    assert registry.aliases["challenger"] == 3


def test_a_promotion_restarts_the_challenger_before_the_next_candidate_is_cut(tmp_path: Path) -> None:
    worker, registry, plant = _start(tmp_path)
    plant.round(worker)
    registry.set_version_tags(NAME, 2, {VERDICT_TAG: "pass", ROLLOUT_STATUS_TAG: "promoted"})
    registry.aliases["champion"] = 2  # what the rollout controller does at the last step
    plant.round(worker)
    assert len(registry.versions) == 2  # not a child of v1 cut after v1 was replaced
    assert worker.state is not None and worker.state.champion.version == 2
    plant.champion_version = "2"  # the drift monitor follows the champion
    for _ in range(3):
        plant.round(worker)
    assert registry.aliases["challenger"] == 3
    assert registry.versions[3].version_tags["driftloop.parent_version"] == "2"


def test_a_held_candidate_is_cut_anyway_after_hold_max_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker, registry, plant = _start(tmp_path, hold_max_s=60.0)
    for _ in range(15):  # 90 s: held from the next round (6 s), cut anyway at 66 s, then held again
        plant.round(worker)
    assert len(registry.versions) == 3 and registry.aliases["challenger"] == 3
    assert metric(worker, "driftloop_trainer_hold_timeouts_total") == 1
    assert "was held 60 s (hold_max_s) while challenger v2 awaits its validation verdict" in caplog.text
    assert registry.versions[2].version_tags.get(VERDICT_TAG) is None  # a dead validator


def test_hold_max_s_0_never_holds(tmp_path: Path) -> None:
    worker, registry, plant = _start(tmp_path, hold_max_s=0.0)
    for _ in range(5):
        plant.round(worker)
    assert len(registry.versions) == 7  # one a round, as without the hold
    assert metric(worker, "driftloop_trainer_hold_checks_total") == 0


def test_the_registry_is_read_at_most_every_hold_check_s(tmp_path: Path) -> None:
    worker, registry, plant = _start(tmp_path, hold_check_s=5.0)
    reads = metric(worker, "driftloop_trainer_hold_checks_total")
    for _ in range(20):  # 20 s, 4 steps and 2 mini-batches a second, each asking the policy
        plant.round(worker, seconds=1.0)
    assert metric(worker, "driftloop_trainer_hold_checks_total") - reads <= 5
    assert len(registry.versions) == 2


def test_an_unreadable_registry_holds_counts_and_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="driftloop_feedback.learn.worker")
    worker, registry, plant = _start(tmp_path)
    registry.unreachable = True
    for _ in range(4):
        plant.round(worker)
    assert worker.state is not None and worker.state.candidates_cut == 1
    assert metric(worker, "driftloop_trainer_hold_check_errors_total") >= 3
    assert caplog.text.count("cannot read the challenger's verdict from the registry") >= 3  # each look
    assert caplog.text.count("due but held for 0 s: the registry could not be read") == 1  # the hold once
    assert "the registry could not be read" in worker.status
    registry.unreachable = False
    registry.set_version_tags(NAME, 2, {VERDICT_TAG: "inconclusive"})
    plant.round(worker)
    assert registry.aliases["challenger"] == 3


def test_a_candidate_not_registered_yet_holds_the_next(tmp_path: Path) -> None:
    worker, registry, plant = _start(tmp_path)
    registry.set_version_tags(NAME, 2, {VERDICT_TAG: "fail"})
    registry.registration_down = True
    for _ in range(6):
        plant.round(worker)
    assert worker.state is not None and worker.state.candidates_cut == 2 and len(worker.state.pending) == 1
    assert "1 candidate(s) cut, not registered yet" in worker.status
    registry.registration_down = False
    plant.clock.advance(30.0)  # registry_retry_s
    plant.round(worker)
    assert registry.aliases["challenger"] == 3 and worker.state.candidates_cut == 2
