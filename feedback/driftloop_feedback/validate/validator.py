"""The validator: champion and challenger scored on the same labelled rows, paired loss differences fed
to the anytime-valid test, the verdict written to the challenger's MLflow version and run.

The caller passes rows the challenger has not trained on (e.g. labelled examples after the last one in
the candidate's data window); ``exclude_ids`` additionally skips any row whose ``example_id`` is in it
(counted as ``skipped``).
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from driftloop_feedback.validate.losses import Loss, Predictor, make_loss, paired_differences
from driftloop_feedback.validate.sequential import Decision, PairedLossTest
from driftloop_feedback.validate.settings import ValidationSettings

TAG_PREFIX = "driftloop.validation."
METRIC_PREFIX = "driftloop.validation."


class LabelledRow(Protocol):
    """What the validator reads of a labelled example (``LabelledExample`` has these)."""

    @property
    def features(self) -> Sequence[float]: ...

    @property
    def truth(self) -> Any: ...


class VerdictRegistry(Protocol):
    """The part of the registry the validator writes to (``driftloop.registry.MlflowRegistry``)."""

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None: ...

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None: ...


@dataclass(frozen=True)
class ValidationResult:
    """The decision and what the validator did with the rows it read."""

    decision: Decision
    loss: str
    read: int  # rows taken from the stream
    scored: int  # rows whose difference is in the decision (= decision.n)
    clipped: int  # scored rows where a loss was clipped to the bound
    skipped: int  # rows in exclude_ids (the challenger trained on them)
    unused: int  # rows read after the verdict or the budget, not in the decision


class Validator:
    """Champion vs challenger on a stream of labelled rows; see the module docstring.

    >>> from sklearn.dummy import DummyRegressor
    >>> champion = DummyRegressor(strategy="constant", constant=1.0).fit([[0.0]], [1.0])
    >>> challenger = DummyRegressor(strategy="constant", constant=0.0).fit([[0.0]], [0.0])
    >>> rows = [Row((0.0,), 0.0)] * 500
    >>> result = Validator(champion, challenger, ValidationSettings(loss_bound=2.0)).run(rows)
    >>> result.decision.verdict, result.decision.n, result.unused
    ('pass', 30, 34)
    """

    def __init__(
        self,
        champion: Predictor,
        challenger: Predictor,
        settings: ValidationSettings | None = None,
        *,
        exclude_ids: Container[str] = frozenset(),
    ) -> None:
        self.settings = settings or ValidationSettings()
        self.champion = champion
        self.challenger = challenger
        self.loss: Loss = make_loss(self.settings, champion)
        self.test = PairedLossTest(self.settings, bound=self.loss.bound)
        self._exclude = exclude_ids
        self._read = 0
        self._clipped = 0
        self._skipped = 0
        self._unused = 0

    def observe(self, rows: Sequence[LabelledRow]) -> Decision:
        """Score one batch of rows and feed their differences; rows past a verdict or the budget are
        counted as unused."""
        self._read += len(rows)
        kept = [r for r in rows if getattr(r, "example_id", None) not in self._exclude]
        self._skipped += len(rows) - len(kept)
        room = self.test.remaining
        scoring = kept[:room]
        self._unused += len(kept) - len(scoring)
        if not scoring:
            return self.test.decision()
        X = np.asarray([r.features for r in scoring], dtype=np.float64)
        truth = np.asarray([r.truth for r in scoring])
        scored = paired_differences(self.loss, self.champion, self.challenger, X, truth)
        before = self.test.n
        decision = self.test.feed_many(scored.differences)
        used = decision.n - before
        self._unused += len(scoring) - used
        self._clipped += int(scored.clipped[:used].sum())
        return decision

    def run(self, rows: Iterable[LabelledRow]) -> ValidationResult:
        """Read rows in batches until a verdict, the budget, or the end of the stream."""
        for batch in _batches(rows, self.settings.batch_size):
            if self.observe(batch).concluded:
                break
        return self.result()

    def result(self) -> ValidationResult:
        """The decision now (on demand: ``inconclusive`` until decided)."""
        decision = self.test.decision()
        return ValidationResult(
            decision=decision,
            loss=self.loss.name,
            read=self._read,
            scored=decision.n,
            clipped=self._clipped,
            skipped=self._skipped,
            unused=self._unused,
        )


def _batches(rows: Iterable[LabelledRow], size: int) -> Iterator[list[LabelledRow]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def verdict_tags(result: ValidationResult) -> dict[str, str]:
    """The challenger version's tags (``driftloop.validation.*``)."""
    d = result.decision
    values: dict[str, object] = {
        "verdict": d.verdict,
        "lower": d.lower,
        "upper": d.upper,
        "mean": d.mean,
        "n": d.n,
        "alpha": d.alpha,
        "method": d.method,
        "margin": d.margin,
        "mode": d.mode,
        "threshold": d.threshold,
        "loss": result.loss,
        "loss_bound": d.bound,
        "exhausted": str(d.exhausted).lower(),
        "clipped": result.clipped,
    }
    return {TAG_PREFIX + k: str(v) for k, v in values.items()}


def verdict_metrics(result: ValidationResult) -> dict[str, float]:
    """The challenger run's metrics (``driftloop.validation.*``, step = examples used)."""
    d = result.decision
    values = {"lower": d.lower, "upper": d.upper, "mean": d.mean, "n": d.n, "clipped": result.clipped}
    return {METRIC_PREFIX + k: float(v) for k, v in values.items() if not np.isnan(v)}


def publish_verdict(
    registry: VerdictRegistry, name: str, version: int, run_id: str | None, result: ValidationResult
) -> None:
    """Tag the challenger's version with the verdict and log its bounds on the version's run."""
    registry.set_version_tags(name, version, verdict_tags(result))
    if run_id is not None:
        registry.log_run_metrics(run_id, verdict_metrics(result), step=result.decision.n)


class Row:
    """A minimal labelled row (tests, examples); ``LabelledExample`` is the real one."""

    __slots__ = ("example_id", "features", "truth")

    def __init__(self, features: Sequence[float], truth: Any, example_id: str | None = None) -> None:
        self.features = features
        self.truth = truth
        self.example_id = example_id
