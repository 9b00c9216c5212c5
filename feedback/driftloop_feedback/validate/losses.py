"""Per-example losses of a fitted model on a batch, each clipped to ``[0, bound]``.

- ``absolute`` (regression default): ``|y - f(x)|``, in the target's units. It grows linearly with the
  error, so a bound of a few typical errors clips only gross misses, and the margin reads in target
  units (as the trainer's MAE does). ``squared`` grows quadratically: its bound must be far larger than
  its typical value, which widens the confidence sequence for the same data.
- ``zero_one`` (classifier default): 1 when the predicted class is wrong. Bounded by 1 without clipping,
  so the bounded-values assumption holds exactly; the margin is in accuracy points.
- ``log``: ``-log p(y)`` from ``predict_proba``, with probabilities floored at ``probability_floor``
  (bound ``-log(floor)``); a true class the model does not know scores the bound.

A clipped loss is counted (``ScoredBatch.clipped``), never hidden: the verdict is about the mean of the
clipped losses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftloop_feedback.validate.errors import ValidatorConfigError
from driftloop_feedback.validate.settings import LossName, ValidationSettings


class Predictor(Protocol):
    """A fitted scikit-learn-like estimator (``predict_proba`` and ``classes_`` for the log loss)."""

    def predict(self, X: Any) -> Any: ...


class Loss(Protocol):
    @property
    def name(self) -> LossName: ...

    @property
    def bound(self) -> float:
        """Each loss is clipped to [0, bound]."""

    def __call__(self, model: Predictor, X: npt.NDArray[np.float64], truth: npt.NDArray[Any]) -> Any:
        """The raw (unclipped) per-example losses of ``model`` on the batch."""


@dataclass(frozen=True)
class AbsoluteError:
    bound: float
    name: LossName = "absolute"

    def __call__(self, model: Predictor, X: npt.NDArray[np.float64], truth: npt.NDArray[Any]) -> Any:
        return np.abs(np.asarray(truth, dtype=np.float64) - _predict(model, X).astype(np.float64))


@dataclass(frozen=True)
class SquaredError:
    bound: float
    name: LossName = "squared"

    def __call__(self, model: Predictor, X: npt.NDArray[np.float64], truth: npt.NDArray[Any]) -> Any:
        return (np.asarray(truth, dtype=np.float64) - _predict(model, X).astype(np.float64)) ** 2


@dataclass(frozen=True)
class ZeroOneLoss:
    bound: float = 1.0
    name: LossName = "zero_one"

    def __call__(self, model: Predictor, X: npt.NDArray[np.float64], truth: npt.NDArray[Any]) -> Any:
        return (_predict(model, X) != np.asarray(truth)).astype(np.float64)


@dataclass(frozen=True)
class LogLoss:
    probability_floor: float = 1e-4
    name: LossName = "log"

    @property
    def bound(self) -> float:
        return -math.log(self.probability_floor)

    def __call__(self, model: Predictor, X: npt.NDArray[np.float64], truth: npt.NDArray[Any]) -> Any:
        proba = getattr(model, "predict_proba", None)
        classes = getattr(model, "classes_", None)
        if proba is None or classes is None:
            raise ValidatorConfigError(
                f"the log loss needs predict_proba and classes_, which {type(model).__name__} lacks: "
                "use DRIFTLOOP_VALIDATION_LOSS=zero_one"
            )
        p = np.asarray(proba(X), dtype=np.float64)
        column = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
        index = np.array([column.get(y, -1) for y in np.asarray(truth).tolist()])
        known = index >= 0
        p_true = np.zeros(len(index))
        p_true[known] = p[np.flatnonzero(known), index[known]]
        return -np.log(np.maximum(p_true, self.probability_floor))


def _predict(model: Predictor, X: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    return np.asarray(model.predict(X)).reshape(len(X))


def is_classifier(model: Predictor) -> bool:
    return hasattr(model, "classes_")


def make_loss(settings: ValidationSettings, champion: Predictor) -> Loss:
    """The loss the settings name, or the task's default (absolute error; zero-one for a classifier)."""
    name = settings.loss or ("zero_one" if is_classifier(champion) else "absolute")
    if name == "zero_one":
        return ZeroOneLoss()
    if name == "log":
        return LogLoss(settings.probability_floor)
    if settings.loss_bound is None:
        raise ValidatorConfigError(
            f"the {name} loss is unbounded: set DRIFTLOOP_VALIDATION_LOSS_BOUND (each loss is clipped to "
            "[0, bound]; a few times the champion's typical error, e.g. 5 x its MAE, clips only gross misses)"
        )
    return AbsoluteError(settings.loss_bound) if name == "absolute" else SquaredError(settings.loss_bound)


@dataclass(frozen=True)
class ScoredBatch:
    """Paired differences ``loss(challenger) - loss(champion)`` in ``[-bound, bound]``."""

    differences: npt.NDArray[np.float64]
    clipped: npt.NDArray[np.bool_]  # per example: either loss was clipped to the bound


def paired_differences(
    loss: Loss,
    champion: Predictor,
    challenger: Predictor,
    X: npt.NDArray[np.float64],
    truth: npt.NDArray[Any],
) -> ScoredBatch:
    """Score both models on the same rows and return their clipped per-example loss differences."""
    champion_loss = np.asarray(loss(champion, X, truth), dtype=np.float64)
    challenger_loss = np.asarray(loss(challenger, X, truth), dtype=np.float64)
    if not (np.all(np.isfinite(champion_loss)) and np.all(np.isfinite(challenger_loss))):
        raise ValidatorConfigError(
            "a model returned a non-finite prediction (NaN or inf): check the model and its features"
        )
    over = (champion_loss > loss.bound) | (challenger_loss > loss.bound)
    d = np.minimum(challenger_loss, loss.bound) - np.minimum(champion_loss, loss.bound)
    return ScoredBatch(d, over)
