"""A closed window's verdict and the drift event it becomes (JSON on ``driftloop.drift``).

Verdicts: ``drift`` / ``no_drift`` (the test decided), ``too_few_rows`` (the window closed on time
with fewer than ``min_rows`` rows), ``no_reference`` (neither the version's reference nor a fallback
detector: ``reason`` says why), ``error`` (the window's rows do not fit the detector).

Whatever the verdict, the event also states the outlier-rate test of the window (``alarms.py``): the
flagged count, the rows with flags, the critical count for those rows, the one-sided binomial p-value,
the base rate and alpha, and whether the window raised the outlier-rate alarm (``outlier_alarm``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import orjson

from driftloop_feedback.monitor.alarms import BINOMIAL, OutlierRateTest, binomial_p_value
from driftloop_feedback.monitor.references import NoDetector, VersionDetectors, select_columns
from driftloop_feedback.monitor.windows import ClosedWindow

Verdict = Literal["drift", "no_drift", "too_few_rows", "no_reference", "error"]
VERDICTS: tuple[Verdict, ...] = ("drift", "no_drift", "too_few_rows", "no_reference", "error")


@dataclass(frozen=True)
class TestSpec:
    test: str  # detector kind, e.g. alibi-ks
    correction: str
    alpha: float
    min_rows: int
    outlier: OutlierRateTest | None = None


@dataclass(frozen=True)
class DriftVerdict:
    window_id: str
    predictor: str
    model_version: str
    window_start: float  # unix seconds, log time of the first row
    window_end: float
    rows: int
    closed_on: str
    verdict: Verdict
    is_drift: bool | None
    test: str
    correction: str
    alpha: float
    outlier_rate: float | None
    reason: str | None = None
    threshold: float | None = None
    threshold_on: str | None = None
    reference: str | None = None
    reference_rows: int | None = None
    p_values: dict[str, float | None] = field(default_factory=dict)
    distances: dict[str, float | None] = field(default_factory=dict)
    outliers: int | None = None  # flagged rows
    flagged_rows: int | None = None  # rows whose call carried outlier flags
    outlier_test: str | None = None  # binomial; None: no outlier flags in the window, or no test
    outlier_alpha: float | None = None
    outlier_base_rate: float | None = None
    outlier_critical: int | None = None  # for flagged_rows rows
    outlier_p_value: float | None = None
    outlier_alarm: bool | None = None  # the window raised the outlier-rate alarm

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> DriftVerdict:
        return cls(**orjson.loads(data))


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _outlier_fields(window: ClosedWindow, test: OutlierRateTest | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"outliers": window.outliers, "flagged_rows": window.flagged_rows}
    if test is None or window.flagged_rows == 0:
        return fields
    n = window.flagged_rows
    return fields | {
        "outlier_test": BINOMIAL,
        "outlier_alpha": test.alpha,
        "outlier_base_rate": test.base_rate,
        "outlier_critical": test.critical(n),
        "outlier_p_value": binomial_p_value(window.outliers, n, test.base_rate),
        "outlier_alarm": window.alarm_rows is not None,
    }


def judge(window: ClosedWindow, detectors: VersionDetectors, spec: TestSpec) -> DriftVerdict:
    """Test the window's rows against its model version's reference."""
    base: dict[str, Any] = {
        "window_id": window.window_id,
        "predictor": window.predictor,
        "model_version": window.model_version,
        "window_start": window.first_ms / 1000.0,
        "window_end": window.last_ms / 1000.0,
        "rows": window.rows,
        "closed_on": window.closed_on,
        "test": spec.test,
        "correction": spec.correction,
        "alpha": spec.alpha,
        "outlier_rate": window.outlier_rate,
        **_outlier_fields(window, spec.outlier),
    }
    if window.rows < spec.min_rows:
        reason = f"{window.rows} rows < min_rows {spec.min_rows}"
        return DriftVerdict(**base, verdict="too_few_rows", is_drift=None, reason=reason)
    found = detectors.get(window.model_version)
    if isinstance(found, NoDetector):
        return DriftVerdict(**base, verdict="no_reference", is_drift=None, reason=found.reason)
    base.update(reference=found.source, reference_rows=found.reference_rows)
    if window.features.shape[1] != found.n_features:
        reason = f"window rows have {window.features.shape[1]} features, the reference {found.n_features}"
        return DriftVerdict(**base, verdict="error", is_drift=None, reason=reason)
    x = np.ascontiguousarray(select_columns(window.features, found.columns), dtype=np.float64)
    try:
        result = found.detector.predict(x)  # type: ignore[attr-defined]
    except Exception as exc:  # a backend's own errors: reported, the monitor goes on
        return DriftVerdict(**base, verdict="error", is_drift=None, reason=f"{type(exc).__name__}: {exc}")
    names = found.feature_names
    kind = str(getattr(found.detector, "kind", spec.test))
    if kind != spec.test:  # the fallback detector, registered with its backend's default correction
        base.update(test=kind, correction="bonferroni")
    return DriftVerdict(
        **base,
        verdict="drift" if result.is_drift else "no_drift",
        is_drift=bool(result.is_drift),
        threshold=_finite(result.threshold),
        threshold_on=result.threshold_on,
        p_values={n: _finite(p) for n, p in zip(names, result.p_values, strict=False)},
        distances={n: _finite(d) for n, d in zip(names, result.distances, strict=False)},
    )
