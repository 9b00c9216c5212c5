"""Naive baselines: what a model must beat to be worth serving.

- ``FeatureColumn(index)`` (regression): persistence, the prediction is a feature of the request, e.g.
  the current reading of the forecast quantity.
- ``LastTruth(lag)`` (regression and classification): the truth of the example ``lag`` places earlier in
  the same asset's event-time order (examples without an asset form one stream). With ``lag`` = the
  label delay in examples this is the last truth known at prediction time (ELEC2: lag 1, the last class).
  The first ``lag`` examples of each asset have no baseline prediction and are left out of its metrics
  (the report's ``scored`` counts say how many were scored).

>>> import numpy as np
>>> LastTruth(1).predict(np.zeros((3, 1)), np.array([1.0, 2.0, 3.0]), np.array(["a", "a", "a"], dtype=object))
[None, 1.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from driftloop_feedback.report.errors import ReportError


class Baseline(Protocol):
    name: str

    def predict(
        self, features: npt.NDArray[np.float64], truth: npt.NDArray[Any], assets: npt.NDArray[Any]
    ) -> list[Any]:
        """One prediction per example (examples in event-time order), None where there is none."""
        ...


@dataclass(frozen=True)
class FeatureColumn:
    index: int
    label: str = ""

    @property
    def name(self) -> str:
        return f"persistence of {self.label or f'feature {self.index}'}"

    def predict(
        self, features: npt.NDArray[np.float64], truth: npt.NDArray[Any], assets: npt.NDArray[Any]
    ) -> list[Any]:
        if features.ndim != 2 or not -features.shape[1] <= self.index < features.shape[1]:
            raise ReportError(
                f"the persistence baseline reads feature {self.index}, but the examples have "
                f"{features.shape[1] if features.ndim == 2 else 0} features: pass a valid column index"
            )
        return [float(x) for x in features[:, self.index]]


@dataclass(frozen=True)
class LastTruth:
    lag: int = 1

    def __post_init__(self) -> None:
        if self.lag < 1:
            raise ReportError(
                f"the last-truth baseline needs lag >= 1 (the label delay in examples), got {self.lag}"
            )

    @property
    def name(self) -> str:
        return "last known truth" if self.lag == 1 else f"truth {self.lag} examples earlier"

    def predict(
        self, features: npt.NDArray[np.float64], truth: npt.NDArray[Any], assets: npt.NDArray[Any]
    ) -> list[Any]:
        history: dict[Any, list[Any]] = {}
        out: list[Any] = []
        for y, asset in zip(truth.tolist(), assets.tolist(), strict=True):
            seen = history.setdefault(asset, [])
            out.append(seen[-self.lag] if len(seen) >= self.lag else None)
            seen.append(y)
        return out
