"""The validator worker's metrics wiring: the waiting gauges, rows skipped, the gauges of the test in
progress (``ValidatorMetrics`` defines them)."""

from __future__ import annotations

import math

from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.state import ValidationRun, ValidatorState


def set_waiting(metrics: ValidatorMetrics, reason: str, waiting: bool) -> None:
    metrics.waiting.labels(reason).set(1 if waiting else 0)


def count_skipped(
    metrics: ValidatorMetrics, state: ValidatorState | None, reason: str, count: int = 1
) -> None:
    """Rows not scored, by reason: the counter, and the run in progress's own count (its verdict says it)."""
    metrics.skipped.labels(reason).inc(count)
    run = state.run if state is not None else None
    if run is not None:
        run.skipped[reason] += count


def refresh_gauges(metrics: ValidatorMetrics, run: ValidationRun | None) -> None:
    """The versions, bounds, threshold, mean and examples of the test in progress (0 when none)."""
    m = metrics
    if run is None:
        m.challenger_version.set(0)
        m.examples.set(0)
        return
    d = run.validator.test.decision()
    m.challenger_version.set(run.challenger.version)
    m.champion_version.set(run.champion.version)
    m.bound.labels("lower").set(d.lower)
    m.bound.labels("upper").set(d.upper)
    m.threshold.set(d.threshold)
    m.examples.set(d.n)
    if not math.isnan(d.mean):
        m.mean.set(d.mean)
