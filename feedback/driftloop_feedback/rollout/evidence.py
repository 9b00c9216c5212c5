"""The ground-truth gate of one canary step: what the canary served against what the champion predicts
for the same rows, paired, fed to the validator's anytime-valid ``PairedLossTest``.

Only the canary's own live rows count: ``endpoint`` = the canary predictor and ``model_version`` = the
candidate. The canary's loss is the loss of the prediction it actually served (from the labelled
example), the champion's the loss of the champion model (loaded from the registry) on the same features.
Each step starts a fresh test, so each weight is judged on the rows served while the canary held it
(arrived during the step). ``inconclusive`` means "wait"; only a decided ``fail`` is a failed check.

>>> from driftloop_feedback.validate import ValidationSettings
>>> class Zero:
...     def predict(self, X): return [0.0] * len(X)
>>> gate = StepEvidence(ValidationSettings(min_examples=5, loss_bound=10.0), Zero())
>>> rows = [((1.0,), 0.9, 1.0)] * 200  # (features, served prediction, truth): the canary is better
>>> gate.feed([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]).verdict
'pass'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from driftloop_feedback.records import Label
from driftloop_feedback.validate import (
    Decision,
    PairedLossTest,
    ValidationSettings,
    make_loss,
    paired_differences,
)
from driftloop_feedback.validate.losses import Predictor


class ServedAnswers:
    """What the canary answered for a batch of rows, in the shape of a model (``predict``, and
    ``predict_proba``/``classes_`` when the probabilities were logged), so the validator's losses apply."""

    def __init__(
        self,
        predictions: Sequence[Label],
        probabilities: npt.NDArray[np.float64] | None = None,
        classes: Sequence[Label] | None = None,
    ) -> None:
        self._predictions = np.asarray(predictions)
        self._probabilities = probabilities
        if classes is not None:
            self.classes_ = np.asarray(classes)

    def predict(self, X: Any) -> Any:
        return self._predictions

    def predict_proba(self, X: Any) -> Any:
        if self._probabilities is None:
            raise AttributeError("the canary's probabilities were not logged")
        return self._probabilities


class StepEvidence:
    def __init__(self, validation: ValidationSettings, champion: Predictor) -> None:
        self.champion = champion
        self.loss = make_loss(validation, champion)
        self.test = PairedLossTest(validation, bound=self.loss.bound)
        self.clipped = 0
        self.unused = 0  # rows arriving after the step's test concluded

    def decision(self) -> Decision:
        return self.test.decision()

    def feed(
        self,
        features: Sequence[Sequence[float]],
        served: Sequence[Label],
        truth: Sequence[Label],
        *,
        probabilities: npt.NDArray[np.float64] | None = None,
        classes: Sequence[Label] | None = None,
    ) -> Decision:
        """Score one batch of the canary's rows; the step's decision after it."""
        if not len(features):
            return self.decision()
        if self.test.decision().concluded:
            self.unused += len(features)
            return self.decision()
        X = np.asarray(features, dtype=np.float64)
        scored = paired_differences(
            self.loss, self.champion, ServedAnswers(served, probabilities, classes), X, np.asarray(truth)
        )
        self.clipped += int(scored.clipped.sum())
        before = self.test.n
        decision = self.test.feed_many(scored.differences)
        self.unused += len(features) - (decision.n - before)
        return decision
