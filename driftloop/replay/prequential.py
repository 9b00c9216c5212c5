"""Offline prequential evaluation with delayed labels (River's ``progressive_val_score(delay=...)``
semantics): every row is predicted first; its label is learned once revealed (``LabelDelay``), before
the prediction of the row at its reveal step.

Three sources are scored on the same rows (those after the training part):
- ``loop``: the model trained on the training part's revealed labels, then learning every revealed
  label with ``partial_fit`` (in batches of ``batch`` labels; a window model's ``refit_every``, which
  gives exactly the model that label-by-label learning would give, since it only changes at refits);
- ``frozen``: a copy of that initial model that never learns again;
- ``baseline``: persistence / the last known label of the row's asset (no prediction before one is
  known; ``scored`` counts the rows each source was scored on). Its class probability is the share of
  label repeats among the training part's consecutive rows (Laplace-smoothed), the rest split evenly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.replay.delay import LabelDelay
from driftloop.replay.errors import ReplayError
from driftloop.replay.inputs import label_inputs, last_known
from driftloop.replay.models import make_model
from driftloop.replay.table import ReplayTable, Task

SOURCES = ("loop", "frozen", "baseline")
PROBABILITY_FLOOR = 1e-15
Metrics = dict[str, float | None]


@dataclass(frozen=True)
class ReplayPlan:
    delay: LabelDelay
    model: str = "window-gbt"
    train_fraction: float = 0.2
    label_lags: int = 0
    batch: int = 1
    seed: int = 0


@dataclass
class Evaluation:
    """Per evaluated row: the truth and each source's prediction (NaN / None where it has none) and,
    for a classification, the probability each source gave the true class."""

    task: Task
    start: int  # first evaluated row (the rows before it trained the initial model)
    trained_on: int  # labels the initial model learned
    truth: np.ndarray
    predictions: dict[str, np.ndarray]
    p_true: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    learned: int = 0  # labels the loop learned after the training part

    def __len__(self) -> int:
        return len(self.truth)

    def scored(self, source: str) -> np.ndarray:
        pred = self.predictions[source]
        if self.task == "regression":
            return np.isfinite(pred.astype(float))
        return np.asarray([p is not None for p in pred.tolist()], dtype=bool)

    def metrics(self, lo: int = 0, hi: int | None = None) -> dict[str, Metrics]:
        """Each source's metrics on evaluated rows ``[lo, hi)``."""
        hi = len(self) if hi is None else hi
        out: dict[str, Metrics] = {}
        for source in SOURCES:
            use = np.zeros(len(self), dtype=bool)
            use[lo:hi] = True
            use &= self.scored(source)
            truth, pred = self.truth[use], self.predictions[source][use]
            if not use.any():
                names = ("mae", "rmse") if self.task == "regression" else ("accuracy", "log_loss")
                out[source] = dict.fromkeys(names)
            elif self.task == "regression":
                err = truth.astype(float) - pred.astype(float)
                out[source] = {"mae": float(np.mean(np.abs(err))), "rmse": math.sqrt(float(np.mean(err**2)))}
            else:
                p = np.maximum(self.p_true[source][use], PROBABILITY_FLOOR)
                out[source] = {
                    "accuracy": float(np.mean(pred == truth)),
                    "log_loss": float(np.mean(-np.log(p))),
                }
        return out


@dataclass
class InitialModel:
    """The run's start: the first scored row, each row's reveal step, the labels known before it
    (``known``), the model inputs ``Z`` (features + label inputs) and the model trained on them."""

    start: int
    reveal: np.ndarray
    known: int
    Z: np.ndarray
    inputs: list[str]
    model: Any


def initial_model(table: ReplayTable, plan: ReplayPlan, y: np.ndarray | None = None) -> InitialModel:
    """Check the split and train the initial model on the labels revealed before the first scored row
    (on ``y`` when given: the live replay trains a classifier on class indices, the feedback path's
    ground truth being numbers)."""
    n = len(table)
    start = round(n * plan.train_fraction)
    if not 0 < plan.train_fraction < 1 or start < 1 or start >= n:
        raise ReplayError(
            f"--train-fraction {plan.train_fraction} leaves {start} of {n} rows for training: pass a "
            "fraction in (0, 1) that leaves rows on both sides"
        )
    reveal = plan.delay.reveal_steps(n, table.time)
    known0 = int(np.searchsorted(reveal, start, side="right"))
    if known0 < 2:
        raise ReplayError(
            f"no label of the first {start} rows is revealed before row {start + 1} with a label delay of "
            f"{plan.delay.describe()}: raise --train-fraction or shorten --label-delay"
        )
    fill = _fill(table, known0)
    lag_cols, lag_names = label_inputs(table.y, reveal, table.asset, plan.label_lags, table.classes, fill)
    Z = np.hstack([table.X, lag_cols])
    model = make_model(table.task, plan.model, plan.seed)
    target = table.y if y is None else y
    if table.classes is not None:
        labels = table.classes if y is None else list(range(len(table.classes)))
        model.fit(Z[:known0], target[:known0], classes=labels)
    else:
        model.fit(Z[:known0], target[:known0])
    return InitialModel(start, reveal, known0, Z, lag_names, model)


def evaluate(
    table: ReplayTable, plan: ReplayPlan, progress: Callable[[int], None] | None = None
) -> Evaluation:
    """Replay ``table`` offline; ``progress(rows_done)`` is called as rows are predicted."""
    init = initial_model(table, plan)
    n, start, reveal, known0, Z, model = len(table), init.start, init.reveal, init.known, init.Z, init.model
    classes = table.classes
    frozen = copy.deepcopy(model)
    batch = max(1, plan.batch, int(getattr(model, "refit_every", 1)))

    rows = n - start
    loop_pred: np.ndarray = np.empty(rows, dtype=object if classes is not None else float)
    loop_proba = np.empty((rows, len(classes))) if classes is not None else None
    learned, i = known0, start
    while i < n:
        k = int(np.searchsorted(reveal, i, side="right"))
        m = (k - learned) // batch * batch
        if m:
            if classes is not None:
                model.partial_fit(Z[learned : learned + m], table.y[learned : learned + m], classes=classes)
            else:
                model.partial_fit(Z[learned : learned + m], table.y[learned : learned + m])
            learned += m
        need = learned + batch
        end = n if need > n else min(n, max(i + 1, int(reveal[need - 1])))
        if classes is not None and loop_proba is not None:
            proba = model.predict_proba(Z[i:end])
            loop_proba[i - start : end - start] = proba
            loop_pred[i - start : end - start] = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
        else:
            loop_pred[i - start : end - start] = model.predict(Z[i:end])
        if progress is not None:
            progress(end - start)
        i = end
    labels = None if classes is None else np.asarray(model.classes_).tolist()
    return score_sources(table, init, frozen, loop_pred, loop_proba, labels, learned - known0)


def score_sources(
    table: ReplayTable,
    init: InitialModel,
    frozen: Any,
    loop_pred: np.ndarray,
    loop_proba: np.ndarray | None,
    labels: list[object] | None,
    learned: int,
) -> Evaluation:
    """The evaluation of the rows from ``init.start``: the loop's predictions as given (a classifier's
    class probabilities ``loop_proba`` with a column per label of ``labels``, which the frozen model's
    ``predict_proba`` columns follow too), the frozen model re-scored, the baseline computed."""
    start, known0, Z = init.start, init.known, init.Z
    truth = table.y[start:]
    evaluation = Evaluation(table.task, start, known0, truth, {}, inputs=init.inputs, learned=learned)
    evaluation.predictions["loop"] = loop_pred
    baseline_index = last_known(table.y, init.reveal, table.asset, 1)[start:]
    if labels is None or loop_proba is None:
        evaluation.predictions["frozen"] = frozen.predict(Z[start:])
        evaluation.predictions["baseline"] = np.where(
            baseline_index >= 0, table.y[np.maximum(baseline_index, 0)], np.nan
        )
        return evaluation
    rows = len(truth)
    classes = table.classes or []
    frozen_proba = frozen.predict_proba(Z[start:])
    columns = {c: j for j, c in enumerate(labels)}
    truth_col = np.asarray([columns[c] for c in truth.tolist()])
    evaluation.predictions["frozen"] = np.asarray(labels, dtype=object)[np.argmax(frozen_proba, 1)]
    base = np.asarray([table.y[j] if j >= 0 else None for j in baseline_index.tolist()], dtype=object)
    evaluation.predictions["baseline"] = base
    p_repeat = _repeat_share(table, known0)
    p_other = (1 - p_repeat) / max(1, len(classes) - 1)
    evaluation.p_true = {
        "loop": loop_proba[np.arange(rows), truth_col],
        "frozen": frozen_proba[np.arange(rows), truth_col],
        "baseline": np.where(base == truth, p_repeat, p_other).astype(float),
    }
    return evaluation


def _fill(table: ReplayTable, known: int) -> Any:
    """What a label input holds before any label of its asset is known."""
    y = table.y[:known]
    if table.classes is None:
        return float(np.mean(y))
    values, counts = np.unique(np.asarray(y, dtype=str), return_counts=True)
    top = values[int(np.argmax(counts))]
    return next(c for c in table.classes if str(c) == top)


def _repeat_share(table: ReplayTable, known: int) -> float:
    """The share of the training part's consecutive rows (per asset) that repeat the label, smoothed."""
    y, asset = table.y[:known], None if table.asset is None else table.asset[:known]
    same_asset = np.ones(max(0, known - 1), dtype=bool) if asset is None else asset[1:] == asset[:-1]
    repeats = (y[1:] == y[:-1]) & same_asset
    return float((repeats.sum() + 1) / (same_asset.sum() + 2))
