"""When to cut a candidate: on drift, on the champion's degradation, on a schedule (with spacing).

The policy is plain state moved by events that carry their own time (``now``), so every rule is tested
by moving a fake clock. It decides; the worker cuts and calls ``cut``.

>>> from driftloop_feedback.learn.settings import CandidatePolicySettings
>>> policy = CandidatePolicy(CandidatePolicySettings(min_examples=2, min_interval_s=0,
...     every_n_examples=3, every_s=None), now=0.0)
>>> policy.learned(2); policy.decide(now=1.0) is None
True
>>> policy.learned(1); policy.decide(now=2.0)
<Trigger.SCHEDULE: 'schedule'>
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from driftloop_feedback.learn.settings import CandidatePolicySettings


class Trigger(StrEnum):
    DRIFT = "drift"
    DEGRADATION = "degradation"
    SCHEDULE = "schedule"


@dataclass(frozen=True)
class DriftEvent:
    """The fields of a ``driftloop.drift`` record the trainer reads."""

    predictor: str
    model_version: str
    is_drift: bool


class DegradationMonitor:
    """The champion's live loss against truth over its last ``window`` labelled examples, and a
    one-sided lower confidence bound on its mean: mean - z(1 - alpha) * sd / sqrt(n) (normal
    approximation of the window mean; losses within one window assumed independent). ``degraded`` when
    that bound exceeds ``baseline * (1 + tolerance)``. Without a training-time baseline, the mean of the
    first ``baseline_examples`` losses becomes the baseline."""

    def __init__(self, settings: CandidatePolicySettings, baseline: float | None) -> None:
        self.settings = settings
        self.baseline = baseline
        self._z = NormalDist().inv_cdf(1.0 - settings.degradation_alpha)
        self._losses: deque[float] = deque(maxlen=settings.degradation_window)
        self._warmup: list[float] = []

    def add(self, losses: list[float]) -> None:
        if self.baseline is not None:
            self._losses.extend(losses)
            return
        for loss in losses:
            if self.baseline is None:
                self._warmup.append(loss)
                if len(self._warmup) >= self.settings.baseline_examples:
                    self.baseline = sum(self._warmup) / len(self._warmup)
                    self._warmup = []
                continue
            self._losses.append(loss)

    @property
    def mean(self) -> float | None:
        losses = self._losses or self._warmup
        return sum(losses) / len(losses) if losses else None

    def lower_bound(self) -> float | None:
        n = len(self._losses)
        if n < max(2, self.settings.degradation_min_examples):
            return None
        mean = sum(self._losses) / n
        var = sum((x - mean) ** 2 for x in self._losses) / (n - 1)
        return mean - self._z * math.sqrt(var / n)

    def degraded(self) -> bool:
        bound = self.lower_bound()
        if bound is None or self.baseline is None:
            return False
        return bound > self.baseline * (1.0 + self.settings.degradation_tolerance)

    def reset(self, baseline: float | None) -> None:
        self.baseline = baseline
        self._losses.clear()
        self._warmup = []


class CandidatePolicy:
    def __init__(
        self, settings: CandidatePolicySettings, *, now: float, baseline: float | None = None
    ) -> None:
        self.settings = settings
        self.degradation = DegradationMonitor(settings, baseline)
        self.champion_version: str | None = None
        self.last_cut_at = now
        self.since_cut = 0
        self.drift_at_count: int | None = None  # ``since_cut`` when the pending drift event arrived
        self.drift_events_used = 0
        self.drift_events_ignored = 0

    def learned(self, count: int, champion_losses: list[float] | None = None) -> None:
        self.since_cut += count
        if champion_losses:
            self.degradation.add(champion_losses)

    def drift(self, event: DriftEvent) -> bool:
        """Note a drift event; True when it counts (drift, about the champion's version, rule on)."""
        relevant = (
            self.settings.drift_enabled
            and event.is_drift
            and (self.settings.drift_any_version or event.model_version == self.champion_version)
        )
        if not relevant:
            self.drift_events_ignored += 1
            return False
        self.drift_events_used += 1
        if self.drift_at_count is None:
            self.drift_at_count = self.since_cut
        return True

    def decide(self, now: float) -> Trigger | None:
        s = self.settings
        if self.since_cut < s.min_examples or now - self.last_cut_at < s.min_interval_s:
            return None
        if self.drift_at_count is not None and self.since_cut - self.drift_at_count >= s.drift_min_examples:
            return Trigger.DRIFT
        if s.degradation_enabled and self.degradation.degraded():
            return Trigger.DEGRADATION
        if s.every_n_examples is not None and self.since_cut >= s.every_n_examples:
            return Trigger.SCHEDULE
        if s.every_s is not None and now - self.last_cut_at >= s.every_s:
            return Trigger.SCHEDULE
        return None

    def cut(self, now: float) -> None:
        """A candidate was cut: every rule starts over (a degraded champion still is: its window stays)."""
        self.last_cut_at = now
        self.since_cut = 0
        self.drift_at_count = None

    def new_champion(self, version: str, baseline: float | None) -> None:
        """The champion changed: drift events are now about its version and its error starts afresh."""
        self.champion_version = version
        self.degradation.reset(baseline)
        self.drift_at_count = None
