"""Prequential metrics of a scored stream: each example scored once, by a prediction made before its
truth was known (the loop's, the frozen model's, the baseline's), then averaged.

Regression: ``mae``, ``rmse``. Classification: ``accuracy`` and ``log_loss`` (``-log p(true class)``,
the probability floored at ``probability_floor``; ``None`` when a source has no probability for some
scored row, e.g. the loop's examples carry none and their model versions were not passed for
re-scoring). A source is scored on the rows where it has a prediction (the baseline has none for each
asset's first examples); ``scored`` counts them.

>>> import numpy as np
>>> regression(np.array([1.0, 2.0]), np.array([2.0, 4.0]))
{'mae': 1.5, 'rmse': 1.5811388300841898}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from driftloop_feedback.report.scoring import SOURCES, ScoredStream

Metrics = dict[str, float | None]
Mask = npt.NDArray[np.bool_]


def regression(truth: npt.NDArray[Any], prediction: npt.NDArray[Any]) -> Metrics:
    if len(truth) == 0:
        return {"mae": None, "rmse": None}
    err = np.asarray(truth, dtype=np.float64) - np.asarray(prediction, dtype=np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(math.sqrt(float(np.mean(err**2))))}


def classification(
    truth: npt.NDArray[Any], prediction: npt.NDArray[Any], p_true: npt.NDArray[np.float64], floor: float
) -> Metrics:
    if len(truth) == 0:
        return {"accuracy": None, "log_loss": None}
    accuracy = float(np.mean([p == y for p, y in zip(prediction.tolist(), truth.tolist(), strict=True)]))
    known = not np.isnan(p_true).any()
    log_loss = float(np.mean(-np.log(np.maximum(p_true, floor)))) if known else None
    return {"accuracy": accuracy, "log_loss": log_loss}


def scored_rows(stream: ScoredStream, source: str) -> Mask:
    """Where ``source`` has a prediction."""
    pred = stream.predictions[source]
    if stream.task == "regression":
        return np.asarray(np.isfinite(pred.astype(np.float64)), dtype=bool)
    return np.asarray([p is not None for p in pred.tolist()], dtype=bool)


def metrics_of(stream: ScoredStream, mask: Mask | None = None) -> dict[str, Metrics]:
    """Each source's metrics on the rows of ``mask`` (all rows when None)."""
    rows = np.ones(len(stream), dtype=bool) if mask is None else mask
    out: dict[str, Metrics] = {}
    for source in SOURCES:
        use = rows & scored_rows(stream, source)
        truth, pred = stream.truth[use], stream.predictions[source][use]
        if stream.task == "regression":
            out[source] = regression(truth, pred)
        else:
            out[source] = classification(truth, pred, stream.p_true[source][use], stream.probability_floor)
    return out


def scored_counts(stream: ScoredStream, mask: Mask | None = None) -> dict[str, int]:
    rows = np.ones(len(stream), dtype=bool) if mask is None else mask
    return {s: int(np.count_nonzero(rows & scored_rows(stream, s))) for s in SOURCES}


WindowBy = Literal["event_time", "log_time", "count"]


@dataclass(frozen=True)
class WindowSpec:
    """Windows of ``size`` seconds of event time or log time, or of ``size`` examples (``count``)."""

    by: WindowBy = "count"
    size: float = 500

    def __post_init__(self) -> None:
        if not self.size > 0:
            raise ValueError(f"a report window needs a positive size, got {self.size}")

    def axis(self, stream: ScoredStream) -> npt.NDArray[np.float64]:
        """Each example's position on the window axis."""
        if self.by == "event_time":
            return stream.event_time
        if self.by == "log_time":
            return stream.log_time
        return np.arange(len(stream), dtype=np.float64)


@dataclass(frozen=True)
class Window:
    start: float  # on the spec's axis: unix seconds, or example index for ``count``
    end: float
    rows: int
    metrics: dict[str, Metrics]
    model_versions: tuple[str, ...]


def windows(stream: ScoredStream, spec: WindowSpec, mask: Mask | None = None) -> list[Window]:
    """Consecutive windows (the empty ones left out) of the rows of ``mask``."""
    axis = spec.axis(stream)
    rows = np.ones(len(stream), dtype=bool) if mask is None else mask
    if not rows.any():
        return []
    origin = float(axis[rows].min()) if spec.by != "count" else 0.0
    index = np.floor((axis - origin) / spec.size).astype(np.int64)
    out = []
    for k in np.unique(index[rows]).tolist():
        in_window = rows & (index == k)
        versions = tuple(sorted(set(stream.model_version[in_window].tolist()), key=_version_order))
        out.append(
            Window(
                start=origin + k * spec.size,
                end=origin + (k + 1) * spec.size,
                rows=int(np.count_nonzero(in_window)),
                metrics=metrics_of(stream, in_window),
                model_versions=versions,
            )
        )
    return out


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def groups(stream: ScoredStream) -> list[tuple[str, str, Mask]]:
    """(predictor, model version, rows) for each pair that served examples, ordered by version."""
    pairs = sorted(
        set(zip(stream.endpoint.tolist(), stream.model_version.tolist(), strict=True)),
        key=lambda p: (_version_order(p[1]), p[0]),
    )
    return [(e, v, (stream.endpoint == e) & (stream.model_version == v)) for e, v in pairs]
