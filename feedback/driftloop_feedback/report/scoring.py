"""Score one stream of labelled examples three ways, on the same rows:

- ``loop``: what was actually served, the example's own ``prediction`` (and, for the log loss, its
  ``probabilities`` when the example carries them, else those of its ``model_version`` re-scored on its
  features when the caller passes that version's model in ``models``; else the log loss is unknown);
- ``frozen``: a given fitted estimator (e.g. the initial champion, MLflow version 1) re-scored on the
  examples' features: measured, not assumed;
- ``baseline``: a naive baseline (``report.baseline``); its log loss treats its label as certain
  (probability 1, floored at ``probability_floor`` when wrong, as the validator's log loss does).

Examples are put in event-time order (ties by log time, then id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftloop_feedback.report.baseline import Baseline
from driftloop_feedback.report.errors import ReportError
from driftloop_feedback.report.records import LoggedExample

Task = Literal["regression", "classification"]
SOURCES = ("loop", "frozen", "baseline")
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScoredStream:
    task: Task
    event_time: FloatArray
    log_time: FloatArray
    endpoint: npt.NDArray[Any]  # str per example
    model_version: npt.NDArray[Any]  # str per example
    truth: npt.NDArray[Any]  # float (regression) or label (classification) per example
    predictions: dict[str, npt.NDArray[Any]]  # per source: float, NaN = none (regression) / label or None
    p_true: dict[str, FloatArray]  # classification, per source: probability of the true class, NaN = unknown
    probability_floor: float
    baseline_name: str

    def __len__(self) -> int:
        return len(self.event_time)


def label(value: Any) -> Any:
    """A class label as ``LabelledExample`` decodes it: strings stay, numbers become float."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode()
    return float(value)


def infer_task(examples: Sequence[LoggedExample], frozen: Any) -> Task:
    """Classification when a truth is a string label, an example carries classes, or the frozen model has
    ``classes_``; regression otherwise."""
    if any(isinstance(e.example.truth, str) or e.example.classes is not None for e in examples):
        return "classification"
    return "classification" if hasattr(frozen, "classes_") else "regression"


def score(
    examples: Sequence[LoggedExample],
    frozen: Any,
    baseline: Baseline,
    *,
    task: Task | None = None,
    models: Mapping[str, Any] | None = None,
    probability_floor: float = 1e-4,
) -> ScoredStream:
    if not examples:
        raise ReportError("no labelled examples to score: has the joiner written driftloop.labelled yet?")
    ordered = sorted(examples, key=lambda e: (e.example.event_time, e.log_time, e.example.example_id))
    task = task or infer_task(ordered, frozen)
    try:
        X = np.asarray([e.example.features for e in ordered], dtype=np.float64)
    except ValueError as exc:
        raise ReportError(
            f"the examples' feature vectors differ in length, so no one model scores them: {exc}"
        ) from exc
    if X.ndim != 2:
        X = X.reshape(len(ordered), -1)
    cast = label if task == "classification" else float
    truth = np.asarray(
        [cast(e.example.truth) for e in ordered], dtype=object if task == "classification" else np.float64
    )
    assets = np.asarray([e.example.asset_id for e in ordered], dtype=object)
    frozen_pred = _predict(frozen, X, "the frozen model")
    base = baseline.predict(X, truth, assets)
    if task == "classification":
        predictions = {
            "loop": np.asarray([label(e.example.prediction) for e in ordered], dtype=object),
            "frozen": np.asarray([label(p) for p in frozen_pred], dtype=object),
            "baseline": np.asarray([None if p is None else label(p) for p in base], dtype=object),
        }
        p_true = {
            "loop": _loop_p_true(ordered, X, truth, models or {}),
            "frozen": _model_p_true(frozen, X, truth),
            "baseline": np.asarray(
                [
                    np.nan if p is None else float(p == y)
                    for p, y in zip(predictions["baseline"], truth, strict=True)
                ]
            ),
        }
    else:
        predictions = {
            "loop": np.asarray([float(e.example.prediction) for e in ordered], dtype=np.float64),
            "frozen": np.asarray(frozen_pred, dtype=np.float64).reshape(len(ordered)),
            "baseline": np.asarray([np.nan if p is None else float(p) for p in base], dtype=np.float64),
        }
        p_true = {}
    return ScoredStream(
        task=task,
        event_time=np.asarray([e.example.event_time for e in ordered], dtype=np.float64),
        log_time=np.asarray([e.log_time for e in ordered], dtype=np.float64),
        endpoint=np.asarray([e.example.endpoint for e in ordered], dtype=object),
        model_version=np.asarray([e.example.model_version for e in ordered], dtype=object),
        truth=truth,
        predictions=predictions,
        p_true=p_true,
        probability_floor=probability_floor,
        baseline_name=baseline.name,
    )


def _predict(model: Any, X: FloatArray, what: str) -> list[Any]:
    try:
        out = np.asarray(model.predict(X)).reshape(len(X))
    except Exception as exc:  # the estimator's own error, e.g. a feature count it was not fitted on
        raise ReportError(
            f"{what} could not predict the examples' {X.shape[1]} features: {type(exc).__name__}: {exc}"
        ) from exc
    return list(out.tolist())


def _model_p_true(model: Any, X: FloatArray, truth: npt.NDArray[Any]) -> FloatArray:
    """Probability the model gives each true class (0 for a class it does not know); NaN without
    ``predict_proba``."""
    proba, classes = getattr(model, "predict_proba", None), getattr(model, "classes_", None)
    if proba is None or classes is None or len(X) == 0:
        return np.full(len(X), np.nan)
    p = np.asarray(proba(X), dtype=np.float64)
    column = {label(c): i for i, c in enumerate(np.asarray(classes).tolist())}
    return np.asarray([p[i, column[y]] if y in column else 0.0 for i, y in enumerate(truth.tolist())])


def _loop_p_true(
    ordered: Sequence[LoggedExample], X: FloatArray, truth: npt.NDArray[Any], models: Mapping[str, Any]
) -> FloatArray:
    out = np.full(len(ordered), np.nan)
    rescore: dict[str, list[int]] = {}
    for i, e in enumerate(ordered):
        ex = e.example
        if ex.probabilities is not None and ex.classes is not None:
            column = {label(c): j for j, c in enumerate(ex.classes)}
            j = column.get(truth[i])
            out[i] = 0.0 if j is None else ex.probabilities[j]
        elif ex.model_version in models:
            rescore.setdefault(ex.model_version, []).append(i)
    for version, rows in rescore.items():
        idx = np.asarray(rows)
        out[idx] = _model_p_true(models[version], X[idx], truth[idx])
    return out
