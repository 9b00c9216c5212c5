"""The trainer's test-then-train score from the estimators' fitted attributes equals their ``predict``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from driftloop_feedback.learn.scoring import predict
from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor
from sklearn.linear_model import SGDRegressor

from tests.learn.helpers import classification_rows, regression_rows


def _regressor() -> IncrementalRegressor:
    X, y = regression_rows(300, 1)
    model = IncrementalRegressor(random_state=0, epochs=2).fit(X, y)
    X2, y2 = regression_rows(64, 2, shift=3.0)
    return model.partial_fit(X2, y2)  # the scalers and the SGD step moved on since fit


def _classifier(names: tuple[str, ...] | None, classes: int = 3) -> IncrementalClassifier:
    X, y = classification_rows(300, 3, names)
    if classes == 2:
        y = np.where(y == y[0], y[0], y[1] if y[1] != y[0] else y[2])
    model = IncrementalClassifier(random_state=0, epochs=2).fit(X, y)
    return model.partial_fit(*classification_rows(50, 4, names)) if classes == 3 else model


@pytest.mark.parametrize(
    "model",
    [
        _regressor(),
        _classifier(None),
        _classifier(("hot", "ok", "warm")),
        _classifier(("hot", "ok", "warm"), classes=2),
        SGDRegressor(random_state=0).fit(*regression_rows(100, 5)),  # not ours: its own predict
    ],
    ids=["regressor", "classifier-3", "classifier-str", "classifier-2", "other-estimator"],
)
def test_the_score_is_the_models_own_prediction(model: Any) -> None:
    X, _ = regression_rows(500, 9)
    X[:5] *= 50  # far outside the training range too
    got, want = predict(model, X), model.predict(X)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got, want)
