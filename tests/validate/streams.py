"""Seeded streams of paired loss differences with a known mean, and a runner that feeds them to the
paired test as the validator does: checking after every new example."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from driftloop_feedback.validate import PairedLossTest, ValidationSettings

Stream = Callable[[np.random.Generator, int], npt.NDArray[np.float64]]
BOUND = 4.0


def shifted_noise(mean: float) -> Stream:
    """``mean + e``, e standard normal clipped to +-3.5 (symmetric, so the mean is exactly ``mean``)."""

    def draw(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        return mean + np.clip(rng.standard_normal(n), -3.5, 3.5)

    return draw


def exchangeable_absolute_errors(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Two equally good regressors on the same rows: shared heavy-tailed noise (t, 3 dof) plus each
    model's own error, drawn alike; absolute errors clipped to BOUND. E[d] = 0 by symmetry."""
    shared = rng.standard_t(3, n)
    champion = np.minimum(np.abs(shared + rng.normal(0, 0.7, n)), BOUND)
    challenger = np.minimum(np.abs(shared + rng.normal(0, 0.7, n)), BOUND)
    return challenger - champion


def changing_spread(rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    """Mean 0 but not identically distributed: the spread jumps from 0.2 to 1.5 half-way (a martingale
    difference sequence, as when a regime change makes both models noisier)."""
    spread = np.where(np.arange(n) < n // 2, 0.2, 1.5)
    return spread * np.clip(rng.standard_normal(n), -2.5, 2.5)


@dataclass(frozen=True)
class Outcomes:
    verdicts: npt.NDArray[np.str_]
    n: npt.NDArray[np.int64]
    exhausted: npt.NDArray[np.bool_]

    def rate(self, verdict: str) -> float:
        return float(np.mean(self.verdicts == verdict))

    def n_quantile(self, verdict: str, q: float) -> float:
        chosen = self.n[self.verdicts == verdict]
        return float(np.quantile(chosen, q)) if chosen.size else float("nan")


def run_streams(stream: Stream, settings: ValidationSettings, seeds: int, first_seed: int = 0) -> Outcomes:
    """Each seed's stream fed whole to a fresh test: it stops at the first example (n >= min_examples)
    where the bounds decide, i.e. the bounds are checked after every example."""
    verdicts, ns, exhausted = [], [], []
    for seed in range(first_seed, first_seed + seeds):
        d = stream(np.random.default_rng(seed), settings.max_examples)
        decision = PairedLossTest(settings, bound=BOUND).feed_many(d)
        verdicts.append(decision.verdict)
        ns.append(decision.n)
        exhausted.append(decision.exhausted)
    return Outcomes(np.array(verdicts), np.array(ns), np.array(exhausted))


def binomial_ceiling(rate: float, trials: int, sds: float = 3.0) -> float:
    """``rate`` plus ``sds`` binomial standard deviations: the most an observed rate may exceed the
    true one by chance (3 sd: a correct method fails this about once in 700 runs)."""
    return rate + sds * float(np.sqrt(rate * (1 - rate) / trials))
