"""The test-then-train score of a batch without sklearn's per-call checks, for driftloop's own estimators.

``IncrementalRegressor.predict`` / ``IncrementalClassifier.predict`` cost ~1 ms per call whatever the
rows (sklearn's input validation in three estimators), a quarter of a ``partial_fit``. The trainer
scores every mini-batch, with rows it has already checked (finite, the model's width), so it computes
the same prediction from the estimators' public fitted attributes (``StandardScaler.mean_``/``scale_``,
``SGD*.coef_``/``intercept_``) with one matrix product. Any other estimator, or one configured otherwise
(a scaler without centring or scaling, a classifier loss other than ``log_loss``), is asked through its
own ``predict``. ``tests/learn/test_scoring.py`` checks both paths give the same predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sklearn
from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor
from scipy.special import expit


def _standard(scaler: Any) -> bool:
    return bool(scaler.with_mean and scaler.with_std) and getattr(scaler, "scale_", None) is not None


def predict(model: Any, X: np.ndarray) -> np.ndarray:
    """``model.predict(X)`` for rows already checked finite and of the model's width."""
    if isinstance(model, IncrementalRegressor) and hasattr(model, "regressor_"):
        xs, ys, sgd = model.x_scaler_, model.y_scaler_, model.regressor_
        if _standard(xs) and _standard(ys) and X.shape[1] == len(xs.mean_):
            scaled = ((X - xs.mean_) / xs.scale_) @ sgd.coef_ + sgd.intercept_[0]
            out: np.ndarray = scaled * ys.scale_[0] + ys.mean_[0]
            return out
    elif (
        isinstance(model, IncrementalClassifier)
        and hasattr(model, "classifier_")
        and model.classifier_.loss == "log_loss"
    ):
        xs, sgd = model.x_scaler_, model.classifier_
        if _standard(xs) and X.shape[1] == len(xs.mean_):
            # predict_proba as sklearn computes it for log_loss (expit, one-vs-rest rows normalised),
            # then the first most probable class, as ``IncrementalClassifier.predict``: saturated
            # probabilities tie the same way
            proba = expit(((X - xs.mean_) / xs.scale_) @ sgd.coef_.T + sgd.intercept_)
            classes: np.ndarray = sgd.classes_
            if proba.shape[1] == 1:  # two classes: [1 - p, p]
                picked: np.ndarray = classes[(proba[:, 0] > 1 - proba[:, 0]).astype(np.intp)]
                return picked
            proba /= proba.sum(axis=1).reshape((-1, 1))
            picked = classes[np.argmax(proba, axis=1)]
            return picked
    with sklearn.config_context(assume_finite=True):  # the rows are checked: no finiteness scan
        predicted: np.ndarray = model.predict(X)
    return predicted
