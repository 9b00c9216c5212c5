"""The challenger: a copy of the champion that goes on learning with ``partial_fit``.

Each mini-batch is scored first and learned second (test-then-train, i.e. prequential): the challenger and
the champion both predict the batch before the challenger learns it, which gives both models' live loss on
examples neither trained on. The champion is not asked twice for what it already answered: a row served by
the champion's version carries the champion's prediction (``LabelledExample.prediction``, what the served
model returned for these features), which is its score; only rows served by another version (a canary, an
older champion) are predicted by the champion here. Then the batch, plus rows replayed from older examples,
is learned in one ``partial_fit``, and offered to the replay buffer right after. A classifier learns
with ``classes=`` its champion's ``classes_``, declared up front; a label outside them is refused before
learning (counted by the worker).

Losses: absolute error for a regressor (its training-time ``val_mae`` is the same measure), 0/1 error for a
classifier (``val_error``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import is_classifier

from driftloop_feedback.learn.errors import TrainerError
from driftloop_feedback.learn.replay import ReplayBuffer
from driftloop_feedback.learn.scoring import predict

Task = Literal["regression", "classification"]


@dataclass(frozen=True)
class BatchScores:
    """Per-example losses of one batch, before the challenger learned it."""

    challenger: np.ndarray
    champion: np.ndarray


def task_of(model: Any) -> Task:
    return "classification" if is_classifier(model) else "regression"


def losses(task: Task, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    if task == "classification":
        return (np.asarray(predicted) != y).astype(float)
    return np.abs(np.asarray(predicted, dtype=float) - y.astype(float))


class Challenger:
    def __init__(self, champion: Any, replay: ReplayBuffer) -> None:
        self.champion = champion
        self.model = copy.deepcopy(champion)
        self.task = task_of(champion)
        self.classes: np.ndarray | None = None
        if self.task == "classification":
            classes = getattr(champion, "classes_", None)
            if classes is None:
                raise TrainerError(
                    f"the champion {type(champion).__name__} is a classifier without classes_: "
                    "register a fitted classifier (its classes are declared to partial_fit up front)"
                )
            self.classes = np.asarray(classes)
            self._class_set = set(self.classes.tolist())
        self.n_features: int | None = getattr(champion, "n_features_in_", None)
        self.replay = replay
        self.learned = 0  # new examples learned
        self.replayed = 0  # replayed rows learned

    def accepts(self, target: Any) -> bool:
        """Whether a label is one of the declared classes (regression: whether it is a finite number)."""
        if self.classes is not None:
            # compared as Python values: a cast to the classes' dtype would cut "hotter" to "hot"
            return isinstance(target, str | int | float) and target in self._class_set
        return isinstance(target, int | float) and bool(np.isfinite(target))

    def accepted(self, targets: Sequence[Any]) -> np.ndarray:
        """``accepts`` of each target, as a boolean array (numbers checked at once)."""
        if self.classes is None and isinstance(targets, np.ndarray) and targets.dtype.kind == "f":
            return np.isfinite(targets)
        if self.classes is None and set(map(type, targets)) <= {float, int}:
            return np.isfinite(np.asarray(targets, dtype=float))
        return np.fromiter(map(self.accepts, targets), dtype=bool, count=len(targets))

    def targets(self, values: list[Any]) -> np.ndarray:
        if self.classes is not None:
            return np.asarray(values, dtype=self.classes.dtype)
        return np.asarray(values, dtype=float)

    def served(
        self, predictions: Sequence[Any], versions: Sequence[str], champion_version: str
    ) -> np.ndarray:
        """Which rows carry a usable champion prediction: served by ``champion_version``, and a finite
        number (regression) or a declared class (classification)."""
        mine = (
            np.ones(len(versions), dtype=bool)
            if versions.count(champion_version) == len(versions)
            else np.fromiter(map(champion_version.__eq__, versions), dtype=bool, count=len(versions))
        )
        if not mine.any():
            return mine
        return mine & self.accepted(predictions)

    def learn(
        self, X: np.ndarray, y: np.ndarray, champion_said: tuple[np.ndarray, Sequence[Any]] | None = None
    ) -> BatchScores:
        """Score the batch with both models, then learn it (plus replayed rows) in one ``partial_fit``.

        ``champion_said``: (mask, predictions) of rows whose champion prediction is known (``served``);
        the champion predicts the others. X has been checked finite and of the model's width by the caller,
        so the scoring skips sklearn's checks (``scoring.predict``; not ``partial_fit``)."""
        known = champion_said[0] if champion_said is not None else np.zeros(len(y), dtype=bool)
        challenger_predicted = predict(self.model, X)  # (``predict`` skips sklearn's finiteness scan)
        if champion_said is not None and known.all():  # the usual case: the champion served every row
            champion_predicted = np.asarray(champion_said[1]).astype(y.dtype, copy=False)
        else:
            champion_predicted = np.empty(len(y), dtype=y.dtype)
            champion_predicted[~known] = predict(self.champion, X[~known])
            if champion_said is not None and known.any():
                said = (
                    champion_said[1][known]
                    if isinstance(champion_said[1], np.ndarray)
                    else [p for p, k in zip(champion_said[1], known, strict=True) if k]
                )
                champion_predicted[known] = np.asarray(said).astype(y.dtype)
        scores = BatchScores(
            challenger=losses(self.task, y, challenger_predicted),
            champion=losses(self.task, y, champion_predicted),
        )
        replayed = self.replay.draw(len(X))
        X_fit, y_fit = X, y
        if replayed is not None:
            X_fit = np.concatenate([X, replayed[0]])
            y_fit = np.concatenate([y, replayed[1].astype(y.dtype)])
            self.replayed += len(replayed[1])
        if self.classes is not None:
            self.model.partial_fit(X_fit, y_fit, classes=self.classes)
        else:
            self.model.partial_fit(X_fit, y_fit)
        self.learned += len(X)
        self.replay.offer(X, y)
        return scores

    def restart_from(self, champion: Any) -> None:
        """A new champion: learn on from it (the replay buffer keeps the older examples)."""
        self.champion = champion
        self.model = copy.deepcopy(champion)
