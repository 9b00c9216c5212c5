"""Writing the validator worker's verdicts to the registry: the verdict of each test decided and the
``superseded`` tags of challengers abandoned, once each, and the one-line account of a verdict.

A version that already has a ``driftloop.validation.verdict`` tag is never written again (e.g. a crash
after the write, before the state was saved). Each write is followed by a save of the state (``save``),
so a verdict written is not written again after a restart either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from driftloop.registry import ModelVersionRef
from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.state import ValidationRun, ValidatorState
from driftloop_feedback.validate.validator import TAG_PREFIX, ValidationResult, publish_verdict
from driftloop_feedback.validate.worker_log import log

VERDICT_TAG = TAG_PREFIX + "verdict"


class ValidatorRegistry(Protocol):
    """The registry port of the validator (``driftloop.registry.MlflowRegistry`` has it)."""

    def get_alias(self, name: str, alias: str) -> ModelVersionRef: ...

    def load_sklearn_model(self, uri: str) -> Any: ...

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]: ...

    def version_tags(self, name: str, version: int) -> dict[str, str]: ...

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None: ...

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None: ...


def superseded_tags(run: ValidationRun, newer: int) -> dict[str, str]:
    """The tags of a challenger abandoned for version ``newer``."""
    return {
        VERDICT_TAG: "superseded",
        TAG_PREFIX + "superseded_by": str(newer),
        TAG_PREFIX + "n": str(run.result().scored),
        TAG_PREFIX + "champion_version": str(run.champion.version),
    }


def write_pending(
    registry: ValidatorRegistry,
    name: str,
    state: ValidatorState,
    metrics: ValidatorMetrics,
    save: Callable[[], None],
) -> None:
    """Write verdicts decided and superseded tags not written yet; a version with a verdict tag
    already is never written again."""
    while state.superseded:
        version, tags = state.superseded[0]
        if VERDICT_TAG not in registry.version_tags(name, version):
            registry.set_version_tags(name, version, tags)
            metrics.verdicts.labels("superseded").inc()
        state.superseded.pop(0)
        save()
    while state.unpublished:
        run = state.unpublished[0]
        version = run.challenger.version
        existing = registry.version_tags(name, version).get(VERDICT_TAG)
        result = run.result()
        if existing is None:
            skipped = sum(run.skipped.values())
            registry.set_version_tags(
                name,
                version,
                {
                    TAG_PREFIX + "champion_version": str(run.champion.version),
                    TAG_PREFIX + "rows_skipped": str(skipped),
                },
            )
            publish_verdict(registry, name, version, run.challenger.run_id, result)
            metrics.verdicts.labels(result.decision.verdict).inc()
            log.info("validator: verdict %r written to %s v%d", result.decision.verdict, name, version)
        else:
            log.warning(
                "validator: %s v%d already has verdict %r; %r not written again",
                name,
                version,
                existing,
                result.decision.verdict,
            )
        state.unpublished.pop(0)
        save()


def describe(run: ValidationRun, result: ValidationResult) -> str:
    """One line: the verdict, which test decided it, the error rate, on how many examples."""
    d = result.decision
    if d.verdict == "pass":
        why = f"upper bound {d.upper:.4g} < threshold {d.threshold:g}"
    elif d.verdict == "fail":
        why = f"lower bound {d.lower:.4g} > threshold {d.threshold:g}"
    else:
        why = f"budget of {d.n} examples used with the threshold {d.threshold:g} inside the bounds"
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(run.skipped.items()) if v) or "none"
    return (
        f"challenger v{run.challenger.version} vs champion v{run.champion.version}: {d.verdict.upper()} "
        f"({why}) on {d.n} paired examples; E[loss(challenger) - loss(champion)] in [{d.lower:.4g}, "
        f"{d.upper:.4g}], mean {d.mean:.4g}; decided by the anytime-valid paired test ({d.method}) at "
        f"alpha={d.alpha:g} ({d.mode}, margin {d.margin:g}, {result.loss} loss clipped to {d.bound:g}, "
        f"{result.clipped} clipped); rows skipped: {skipped}"
    )
