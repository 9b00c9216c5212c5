"""The paired test's decision rule: thresholds per mode, minimum, budget, stopping, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from driftloop_feedback.validate import (
    BadDifferenceError,
    PairedLossTest,
    SequenceClosedError,
    ValidationSettings,
    ValidatorConfigError,
)
from pydantic import ValidationError


def test_a_constant_improvement_passes_as_soon_as_the_minimum_allows() -> None:
    test = PairedLossTest(ValidationSettings(min_examples=50), bound=1.0)
    decision = test.feed_many(np.full(500, -0.5))
    assert decision.verdict == "pass" and decision.n == 50
    assert decision.upper < 0.0 and decision.mean == -0.5
    assert decision.lower <= -0.5 <= decision.upper


def test_a_batch_is_used_only_up_to_the_deciding_example_and_then_the_test_is_closed() -> None:
    test = PairedLossTest(ValidationSettings(min_examples=5), bound=1.0)
    decision = test.feed_many(np.full(1000, 0.6))
    assert decision.verdict == "fail" and decision.lower > 0.0
    assert test.n == decision.n < 1000 and test.remaining == 0
    with pytest.raises(SequenceClosedError, match=r"decided 'fail' at n=\d+: start a new PairedLossTest"):
        test.feed(0.0)


def test_feeding_one_at_a_time_decides_at_the_same_example_as_a_batch() -> None:
    d = np.clip(np.random.default_rng(8).normal(-0.3, 1.0, 3000), -4, 4)
    settings = ValidationSettings(min_examples=30, max_examples=3000)
    batch = PairedLossTest(settings, bound=4.0).feed_many(d)
    single = PairedLossTest(settings, bound=4.0)
    for value in d:
        decision = single.feed(value)
        if decision.concluded:
            break
    assert batch.verdict == decision.verdict == "pass"
    assert batch.n == decision.n
    assert batch.upper == pytest.approx(decision.upper)


def test_superiority_needs_the_margin_non_inferiority_allows_it() -> None:
    d = np.clip(np.random.default_rng(9).normal(-0.1, 0.2, 20_000), -1, 1)
    # 0.1 better on average: superior by a margin of 0.05? yes. By 0.2? no: fail
    sup = PairedLossTest(ValidationSettings(margin=0.05, max_examples=20_000), bound=1.0).feed_many(d)
    assert sup.verdict == "pass" and sup.upper < -0.05 and sup.threshold == -0.05
    strict = PairedLossTest(ValidationSettings(margin=0.2, max_examples=20_000), bound=1.0).feed_many(d)
    assert strict.verdict == "fail" and strict.lower > -0.2
    # 0.05 worse on average: not superior, but non-inferior within 0.1
    worse = d + 0.15
    settings = ValidationSettings(mode="non-inferiority", margin=0.1, max_examples=20_000)
    ni = PairedLossTest(settings, bound=2.0).feed_many(worse)
    assert ni.verdict == "pass" and ni.upper < 0.1 and ni.threshold == 0.1
    assert (
        PairedLossTest(ValidationSettings(max_examples=20_000), bound=2.0).feed_many(worse).verdict == "fail"
    )


def test_no_verdict_before_the_minimum_even_when_the_bounds_would_decide() -> None:
    test = PairedLossTest(ValidationSettings(min_examples=400), bound=1.0)
    decision = test.feed_many(np.full(399, -1.0))
    assert decision.verdict == "inconclusive" and decision.upper < 0.0 and not decision.concluded
    assert test.feed(-1.0).verdict == "pass"


def test_at_the_budget_the_verdict_stays_inconclusive_and_says_exhausted() -> None:
    test = PairedLossTest(ValidationSettings(min_examples=10, max_examples=200), bound=1.0)
    d = np.tile([0.5, -0.5], 500)
    decision = test.feed_many(d)
    assert decision.verdict == "inconclusive" and decision.exhausted and decision.concluded
    assert decision.n == 200 and decision.mean == 0.0
    with pytest.raises(SequenceClosedError, match="used its budget at n=200"):
        test.feed_many([0.0])


@pytest.mark.parametrize("bad", [1.5, -1.0001, float("nan")])
def test_a_difference_outside_the_bound_is_refused_and_nothing_of_the_batch_is_used(bad: float) -> None:
    test = PairedLossTest(ValidationSettings(), bound=1.0)
    with pytest.raises(BadDifferenceError, match=r"outside \[-1.0, 1.0\]: clip each loss"):
        test.feed_many([0.1, bad, 0.2])
    assert test.n == 0


def test_settings_that_cannot_work_are_refused_with_what_to_change() -> None:
    with pytest.raises(ValidatorConfigError, match="needs the loss bound"):
        PairedLossTest(ValidationSettings())
    with pytest.raises(ValidatorConfigError, match=r"margin=2\.0 is not below the loss bound 1\.0"):
        PairedLossTest(ValidationSettings(margin=2.0), bound=1.0)
    with pytest.raises(ValidationError, match="MAX_EXAMPLES"):
        ValidationSettings(min_examples=100, max_examples=10)
    with pytest.raises(ValidationError, match="extra"):
        ValidationSettings(alpah=0.1)  # type: ignore[call-arg]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_VALIDATION_ALPHA", "0.01")
    monkeypatch.setenv("DRIFTLOOP_VALIDATION_MODE", "non-inferiority")
    monkeypatch.setenv("DRIFTLOOP_VALIDATION_LOSS_BOUND", "3")
    settings = ValidationSettings()
    assert (settings.alpha, settings.mode, settings.loss_bound) == (0.01, "non-inferiority", 3.0)
    assert PairedLossTest(settings).decision().alpha == 0.01
