"""The candidate policy, rule by rule, with a fake clock (no sleeping)."""

from __future__ import annotations

import numpy as np
from driftloop_feedback.learn.policy import CandidatePolicy, DriftEvent, Trigger
from driftloop_feedback.learn.settings import CandidatePolicySettings


def settings(**overrides: object) -> CandidatePolicySettings:
    values: dict[str, object] = {
        "min_examples": 10,
        "min_interval_s": 60.0,
        "every_n_examples": None,
        "every_s": None,
        "drift_min_examples": 0,
        "degradation_window": 200,
        "degradation_min_examples": 50,
        "degradation_alpha": 0.01,
        "degradation_tolerance": 0.1,
        "baseline_examples": 50,
    }
    values.update(overrides)
    return CandidatePolicySettings.model_validate(values)


def test_schedule_by_count_waits_for_n_examples() -> None:
    policy = CandidatePolicy(settings(every_n_examples=100, min_interval_s=0), now=0.0)
    policy.learned(99)
    assert policy.decide(now=1.0) is None
    policy.learned(1)
    assert policy.decide(now=1.0) is Trigger.SCHEDULE
    policy.cut(now=1.0)
    assert policy.decide(now=2.0) is None


def test_schedule_by_time_needs_the_time_and_the_minimum_examples() -> None:
    policy = CandidatePolicy(settings(every_s=3600.0), now=0.0)
    policy.learned(5)
    assert policy.decide(now=3600.0) is None  # too few examples since the last candidate
    policy.learned(5)
    assert policy.decide(now=3599.0) is None
    assert policy.decide(now=3600.0) is Trigger.SCHEDULE


def test_min_spacing_holds_back_every_trigger() -> None:
    policy = CandidatePolicy(settings(every_n_examples=10, min_interval_s=60.0), now=0.0)
    policy.champion_version = "3"
    policy.learned(50)
    policy.drift(DriftEvent("main", "3", True))
    assert policy.decide(now=59.9) is None
    assert policy.decide(now=60.0) is Trigger.DRIFT


def test_drift_about_the_champion_triggers_after_enough_new_examples() -> None:
    policy = CandidatePolicy(settings(drift_min_examples=30, min_interval_s=0), now=0.0)
    policy.champion_version = "3"
    policy.learned(20)
    assert policy.drift(DriftEvent("main", "3", True))
    policy.learned(29)
    assert policy.decide(now=1.0) is None  # the candidate has not seen enough of the new regime
    policy.learned(1)
    assert policy.decide(now=1.0) is Trigger.DRIFT
    policy.cut(now=1.0)
    policy.learned(100)
    assert policy.decide(now=2.0) is None  # the drift event was used up by the cut


def test_drift_events_not_about_the_champion_or_without_drift_are_ignored() -> None:
    policy = CandidatePolicy(settings(min_interval_s=0), now=0.0)
    policy.champion_version = "3"
    policy.learned(100)
    assert not policy.drift(DriftEvent("main", "2", True))
    assert not policy.drift(DriftEvent("main", "3", False))
    assert policy.decide(now=1.0) is None
    assert policy.drift_events_ignored == 2
    anyversion = CandidatePolicy(settings(min_interval_s=0, drift_any_version=True), now=0.0)
    anyversion.champion_version = "3"
    anyversion.learned(100)
    assert anyversion.drift(DriftEvent("main", "2", True))
    assert anyversion.decide(now=1.0) is Trigger.DRIFT


def test_degradation_fires_when_the_bound_clears_the_training_error() -> None:
    rng = np.random.default_rng(0)
    policy = CandidatePolicy(settings(min_interval_s=0), now=0.0, baseline=1.0)
    policy.learned(100, list(rng.exponential(1.0, 100)))  # as good as in training
    assert policy.decide(now=1.0) is None
    policy.learned(200, list(rng.exponential(2.0, 200)))  # twice the training error
    assert policy.degradation.lower_bound() is not None
    assert policy.decide(now=2.0) is Trigger.DEGRADATION


def test_degradation_needs_the_bound_not_just_the_mean() -> None:
    # a noisy window whose mean is above the threshold but whose lower bound is not: no trigger
    policy = CandidatePolicy(settings(min_interval_s=0, degradation_min_examples=50), now=0.0, baseline=1.0)
    losses = [0.0] * 40 + [6.0] * 10  # mean 1.2 > 1.1, sd ~2.4: bound ~ 1.2 - 2.33 * 0.34 < 1.1
    policy.learned(50, losses)
    assert (policy.degradation.mean or 0) > 1.1
    assert policy.decide(now=1.0) is None


def test_degradation_learns_its_baseline_from_live_examples_when_the_run_has_none() -> None:
    policy = CandidatePolicy(settings(min_interval_s=0, baseline_examples=50), now=0.0, baseline=None)
    policy.learned(50, [1.0] * 50)
    assert policy.degradation.baseline == 1.0
    policy.learned(60, [1.0] * 60)
    assert policy.decide(now=1.0) is None
    policy.learned(200, [3.0] * 200)
    assert policy.decide(now=1.0) is Trigger.DEGRADATION


def test_a_new_champion_resets_the_error_window_and_pending_drift() -> None:
    policy = CandidatePolicy(settings(min_interval_s=0), now=0.0, baseline=1.0)
    policy.champion_version = "3"
    policy.learned(200, [3.0] * 200)
    policy.drift(DriftEvent("main", "3", True))
    policy.new_champion("4", baseline=1.0)
    assert policy.decide(now=1.0) is None
    assert not policy.drift(DriftEvent("main", "3", True))  # about the old champion now
