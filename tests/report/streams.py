"""Tiny hand-made streams and models for the report's tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from driftloop_feedback.records import Label, LabelledExample
from driftloop_feedback.report import LoggedExample


def example(
    i: int,
    features: tuple[float, ...],
    prediction: Label,
    truth: Label,
    *,
    version: str = "1",
    endpoint: str = "main",
    asset: str | None = "a",
    event_time: float | None = None,
    probabilities: tuple[float, ...] | None = None,
    classes: tuple[Label, ...] | None = None,
) -> LabelledExample:
    t = float(i + 1) if event_time is None else event_time
    return LabelledExample(
        f"r{i}:0", f"r{i}", 0, features, prediction, truth, endpoint, version, t, t + 0.5, "asset",
        asset, probabilities, classes,
    )  # fmt: skip


def logged(examples: list[LabelledExample], start: float = 1_000.0) -> list[LoggedExample]:
    return [LoggedExample(e, start + i) for i, e in enumerate(examples)]


class Doubler:
    """A fitted regressor: twice the first feature."""

    def predict(self, X: Any) -> Any:
        return 2.0 * np.asarray(X)[:, 0]


class Threshold:
    """A fitted classifier of classes a/b: p(a) = the first feature."""

    classes_ = np.array(["a", "b"])

    def predict_proba(self, X: Any) -> Any:
        p = np.asarray(X)[:, 0]
        return np.column_stack([p, 1.0 - p])

    def predict(self, X: Any) -> Any:
        return np.where(np.asarray(X)[:, 0] >= 0.5, "a", "b")
