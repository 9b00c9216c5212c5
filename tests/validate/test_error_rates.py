"""The validator's error rates over many seeded streams, checking after EVERY new example (peeking).

alpha = 0.05, loss bound 4 (differences in [-4, 4]), 400 seeds per case, budget 5000 examples. An
observed rate may exceed its target by chance: the tests allow alpha + 3 binomial standard deviations
(0.05 + 0.033 = 0.083 at 400 seeds). docs/validation.md lists the rates these runs show.
"""

from __future__ import annotations

import numpy as np
import pytest
from driftloop_feedback.validate import PairedLossTest, ValidationSettings

from tests.validate.streams import (
    BOUND,
    binomial_ceiling,
    changing_spread,
    exchangeable_absolute_errors,
    run_streams,
    shifted_noise,
)

ALPHA = 0.05
SEEDS = 400
BUDGET = 5000
CEILING = binomial_ceiling(ALPHA, SEEDS)

SUPERIORITY = ValidationSettings(alpha=ALPHA, min_examples=30, max_examples=BUDGET)


def test_a_worse_challenger_passes_at_most_at_alpha() -> None:
    outcomes = run_streams(shifted_noise(+0.05), SUPERIORITY, SEEDS)
    assert outcomes.rate("pass") <= CEILING
    assert outcomes.rate("pass") == 0.0  # what we see: a worse challenger never passed


def test_a_challenger_exactly_at_the_non_inferiority_margin_passes_at_most_at_alpha() -> None:
    # the hardest "worse" case: E[d] equals the margin, so any pass is a false one
    settings = ValidationSettings(
        alpha=ALPHA, mode="non-inferiority", margin=0.1, min_examples=30, max_examples=BUDGET
    )
    outcomes = run_streams(shifted_noise(+0.1), settings, SEEDS, first_seed=10_000)
    assert outcomes.rate("pass") <= CEILING


@pytest.mark.parametrize(
    "stream",
    [shifted_noise(0.0), exchangeable_absolute_errors, changing_spread],
    ids=["gaussian", "exchangeable-abs-errors", "changing-spread"],
)
def test_b_an_equal_challenger_passes_at_most_at_alpha_and_stays_inconclusive(stream) -> None:  # type: ignore[no-untyped-def]
    outcomes = run_streams(stream, SUPERIORITY, SEEDS, first_seed=20_000)
    assert outcomes.rate("pass") <= CEILING
    assert outcomes.rate("pass") + outcomes.rate("fail") <= CEILING  # any wrong verdict: at most alpha
    assert outcomes.rate("inconclusive") >= 0.9
    # undecided streams ran to the budget and say so
    undecided = outcomes.verdicts == "inconclusive"
    assert np.all(outcomes.exhausted[undecided]) and np.all(outcomes.n[undecided] == BUDGET)


def test_c_a_clearly_better_challenger_passes_within_600_examples() -> None:
    # effect: E[d] = -0.25 loss units with unit spread (a quarter of a standard deviation)
    outcomes = run_streams(shifted_noise(-0.25), SUPERIORITY, SEEDS, first_seed=30_000)
    passed_in_time = np.mean((outcomes.verdicts == "pass") & (outcomes.n <= 600))
    assert passed_in_time >= 0.9
    assert outcomes.rate("fail") == 0.0


def test_c_a_clearly_worse_challenger_fails_within_600_examples() -> None:
    outcomes = run_streams(shifted_noise(+0.25), SUPERIORITY, SEEDS, first_seed=40_000)
    assert np.mean((outcomes.verdicts == "fail") & (outcomes.n <= 600)) >= 0.9
    assert outcomes.rate("pass") == 0.0


def _naive_t_test_passes(d: np.ndarray, min_examples: int, z: float) -> np.ndarray:
    """Per stream (row): does a one-sided t-test of E[d] < 0, re-run after every example from
    ``min_examples`` on, ever pass? (The classic fixed-n test, peeked at.)"""
    n = np.arange(1, d.shape[1] + 1)
    s1 = np.cumsum(d, axis=1)
    s2 = np.cumsum(d * d, axis=1)
    mean = s1 / n
    var = np.maximum(s2 - n * mean**2, 1e-12) / np.maximum(n - 1, 1)
    t = mean / np.sqrt(var / n)
    return np.any((t < -z) & (n >= min_examples), axis=1)


def test_a_naive_t_test_rechecked_after_every_example_does_exceed_alpha() -> None:
    """The control: the same equal-challenger streams, judged by a fixed-n t-test peeked at after every
    example, pass far more often than alpha, while the same test looked at once, at the budget, keeps
    its rate. So these streams can expose a method that is not anytime-valid."""
    rng = np.random.default_rng(50_000)
    d = np.stack([shifted_noise(0.0)(rng, BUDGET) for _ in range(SEEDS)])
    z = 1.6449  # one-sided 5 %
    peeking = _naive_t_test_passes(d, 30, z).mean()
    assert peeking > 3 * ALPHA
    once = _naive_t_test_passes(d, BUDGET, z).mean()
    assert once <= CEILING
    # and the confidence sequence on the very same streams
    verdicts = [PairedLossTest(SUPERIORITY, bound=BOUND).feed_many(row).verdict for row in d]
    cs_passes = np.mean(np.array(verdicts) == "pass")
    assert cs_passes <= CEILING
