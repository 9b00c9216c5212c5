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
from driftloop_feedback.monitor.recent import RecentRows
from driftloop_feedback.monitor.references import NoDetector, VersionDetectors, select_columns
from driftloop_feedback.monitor.serial import ar1_test, lag1
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
    serial: str = "independent"  # or "ar1" (serial.py)


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
    serial: str | None = None  # "ar1": p-values at effective sizes (serial.py); None: as the detector's
    effective_rows: dict[str, float] | None = None  # per feature, the window's (ar1)
    reference_effective_rows: dict[str, float] | None = None  # per feature, the reference's (ar1)

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


def judge(
    window: ClosedWindow, detectors: VersionDetectors, spec: TestSpec, recent: np.ndarray | None = None
) -> DriftVerdict:
    """Test the window's rows against its model version's reference, or against ``recent`` rows of its
    predictor (``recent.py``) when given; with ``spec.serial == "ar1"``, KS p-values at effective sizes."""
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
    reference = _Reference(found.detector, found.reference_rows, found.reference_lag1)
    try:
        if recent is not None and recent.shape[1] == window.features.shape[1]:
            rows = np.ascontiguousarray(select_columns(recent, found.columns), dtype=np.float64)
            reference = _Reference(detectors.fit(rows), len(rows), lag1(rows))
            base.update(
                reference=f"the last {len(rows)} rows of predictor {window.predictor!r} before this window",
                reference_rows=len(rows),
            )
        result = reference.detector.predict(x)  # type: ignore[attr-defined]
    except Exception as exc:  # a backend's own errors: reported, the monitor goes on
        return DriftVerdict(**base, verdict="error", is_drift=None, reason=f"{type(exc).__name__}: {exc}")
    names = found.feature_names
    kind = str(getattr(reference.detector, "kind", spec.test))
    if kind != spec.test:  # the fallback detector, registered with its backend's default correction
        base.update(test=kind, correction="bonferroni")
    is_drift, threshold, p_values = bool(result.is_drift), result.threshold, result.p_values
    if spec.serial == "ar1" and result.threshold_on == "p_value" and base["test"].endswith("-ks"):
        serial = ar1_test(
            result.distances,
            x,
            reference.lag1 if reference.lag1 is not None else np.zeros(x.shape[1]),
            reference.rows,
            alpha=spec.alpha,
            correction=base["correction"],
        )
        is_drift, threshold, p_values = serial.is_drift, serial.threshold, serial.p_values
        base.update(
            serial="ar1",
            effective_rows={
                n: round(float(e), 2) for n, e in zip(names, serial.effective_window, strict=False)
            },
            reference_effective_rows=None
            if serial.effective_reference is None
            else {n: round(float(e), 2) for n, e in zip(names, serial.effective_reference, strict=False)},
        )
    return DriftVerdict(
        **base,
        verdict="drift" if is_drift else "no_drift",
        is_drift=is_drift,
        threshold=_finite(threshold),
        threshold_on=result.threshold_on,
        p_values={n: _finite(p) for n, p in zip(names, p_values, strict=False)},
        distances={n: _finite(d) for n, d in zip(names, result.distances, strict=False)},
    )


def judge_and_keep(
    window: ClosedWindow, detectors: VersionDetectors, spec: TestSpec, recent: RecentRows | None
) -> DriftVerdict:
    """``judge`` against the predictor's recent rows when ``recent`` holds enough of them (else the
    version's reference), then keep the window's rows there unless the verdict is ``error`` (rows the
    detector could not take)."""
    rows = None if recent is None else recent.reference(window.predictor, window.features.shape[1])
    verdict = judge(window, detectors, spec, rows)
    if recent is not None and verdict.verdict != "error":
        recent.add(window.predictor, window.features)
    return verdict


@dataclass(frozen=True)
class _Reference:
    detector: object
    rows: int | None  # None: unknown (a fallback detector): the window's size alone counts
    lag1: np.ndarray | None
