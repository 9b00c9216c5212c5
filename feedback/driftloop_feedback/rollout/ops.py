"""The operations gate: the canary's 5xx rate, p99 latency and outlier rate against the main
predictor's, over the last interval, from the ingress's Prometheus metrics (counters and histogram deltas
between two scrapes).

``driftloop_ingress_requests_total{deployment,predictor,code}`` gives requests and errors (a code of 500
or more, or 0 = no answer; 4xx are the client's input, not the model's fault);
``driftloop_ingress_request_seconds_bucket{deployment,predictor,le}`` gives the latency distribution.
The p99 is the upper bound of the bucket holding the 99th percentile (``inf`` past the last bound).
``driftloop_ingress_scored_rows_total`` / ``driftloop_ingress_outlier_rows_total{deployment,predictor}``
give the rows the graph's outlier node scored and flagged; the canary's outlier rate against main's is a
one-sided test with a stated error rate (``outlier_gate``).

Too few requests in the interval (``min_requests``), or too few scored rows for the outlier test
(``min_scored_rows``), gives no verdict on that check: no data is never a failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

from driftloop_feedback.rollout.errors import BackendError
from driftloop_feedback.rollout.outlier_gate import OutlierRateTest, outlier_rate_test
from driftloop_feedback.rollout.settings import RolloutSettings

REQUESTS = "driftloop_ingress_requests"
LATENCY = "driftloop_ingress_request_seconds"
SCORED_ROWS = "driftloop_ingress_scored_rows"
OUTLIER_ROWS = "driftloop_ingress_outlier_rows"


@dataclass(frozen=True)
class PredictorCounts:
    requests: float = 0.0
    errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count
    scored_rows: float = 0.0  # rows the outlier node scored
    outlier_rows: float = 0.0  # ... and flagged

    def minus(self, before: PredictorCounts) -> PredictorCounts:
        buckets = {le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()}
        return PredictorCounts(
            self.requests - before.requests,
            self.errors - before.errors,
            buckets,
            self.scored_rows - before.scored_rows,
            self.outlier_rows - before.outlier_rows,
        )

    def p99(self) -> float | None:
        total = self.buckets.get(math.inf, 0.0)
        if total <= 0:
            return None
        target = 0.99 * total
        for le in sorted(self.buckets):
            if self.buckets[le] >= target:
                return le
        return math.inf


IngressSnapshot = Mapping[str, PredictorCounts]  # predictor -> cumulative counts


def parse_ingress_metrics(text: str, deployment: str) -> dict[str, PredictorCounts]:
    """The deployment's cumulative counts per predictor from a ``/metrics`` exposition."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    rows: dict[str, dict[str, float]] = {SCORED_ROWS: {}, OUTLIER_ROWS: {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("deployment") != deployment or "predictor" not in labels:
                continue
            predictor = labels["predictor"]
            if sample.name == REQUESTS + "_total":
                requests[predictor] = requests.get(predictor, 0.0) + sample.value
                code = labels.get("code", "")
                if code.isdigit() and (int(code) >= 500 or int(code) == 0):
                    errors[predictor] = errors.get(predictor, 0.0) + sample.value
            elif sample.name == LATENCY + "_bucket" and "le" in labels:
                le = float(labels["le"])  # "+Inf" parses to inf
                buckets.setdefault(predictor, {})[le] = sample.value
            elif sample.name.endswith("_total") and sample.name[: -len("_total")] in rows:
                counted = rows[sample.name[: -len("_total")]]
                counted[predictor] = counted.get(predictor, 0.0) + sample.value
    scored, outliers = rows[SCORED_ROWS], rows[OUTLIER_ROWS]
    return {
        p: PredictorCounts(
            requests.get(p, 0.0),
            errors.get(p, 0.0),
            buckets.get(p, {}),
            scored.get(p, 0.0),
            outliers.get(p, 0.0),
        )
        for p in set(requests) | set(buckets) | set(scored) | set(outliers)
    }


@dataclass(frozen=True)
class OpsCheck:
    """The canary against main over one interval. ``breach`` is None when the canary is within the limits
    (or when there was too little traffic to tell: ``enough_data`` is then False)."""

    canary_requests: float
    main_requests: float
    canary_error_rate: float | None
    main_error_rate: float | None
    canary_p99_s: float | None
    main_p99_s: float | None
    enough_data: bool
    breach: str | None
    outliers: OutlierRateTest | None = None  # None: no outlier metrics on either predictor
    unavailable: str | None = None  # why there were no figures at all this interval (``no_figures``)

    @classmethod
    def no_figures(cls, reason: str) -> OpsCheck:
        """No ops verdict because the metrics could not be read (``reason``): not a failure."""
        return cls(0.0, 0.0, None, None, None, None, False, None, None, reason)

    def as_dict(self) -> dict[str, object]:
        def finite(x: float | None) -> float | str | None:
            return "inf" if x is not None and math.isinf(x) else x

        return {
            "canary_requests": self.canary_requests,
            "main_requests": self.main_requests,
            "canary_error_rate": self.canary_error_rate,
            "main_error_rate": self.main_error_rate,
            "canary_p99_s": finite(self.canary_p99_s),
            "main_p99_s": finite(self.main_p99_s),
            "enough_data": self.enough_data,
            "breach": self.breach,
            "canary_scored_rows": self.outliers.canary_rows if self.outliers else None,
            "main_scored_rows": self.outliers.main_rows if self.outliers else None,
            "canary_outlier_rate": self.outliers.canary_rate if self.outliers else None,
            "main_outlier_rate": self.outliers.main_rate if self.outliers else None,
            "outlier_test": self.outliers.as_dict() if self.outliers else None,
            "unavailable": self.unavailable,
        }


def compare(before: IngressSnapshot, after: IngressSnapshot, settings: RolloutSettings) -> OpsCheck:
    empty = PredictorCounts()
    canary = after.get(settings.canary_predictor, empty).minus(before.get(settings.canary_predictor, empty))
    main = after.get(settings.main_predictor, empty).minus(before.get(settings.main_predictor, empty))
    canary_rate = canary.errors / canary.requests if canary.requests > 0 else None
    main_rate = main.errors / main.requests if main.requests > 0 else None
    canary_p99, main_p99 = canary.p99(), main.p99()
    enough = canary.requests >= settings.min_requests
    breach = None
    if enough and canary_rate is not None:
        limit = (main_rate or 0.0) + settings.max_error_rate_increase
        if canary_rate > limit:
            breach = (
                f"canary error rate {canary_rate:.3f} over {canary.requests:.0f} requests is above main's "
                f"{main_rate or 0.0:.3f} + {settings.max_error_rate_increase:g}"
            )
    comparable = enough and main.requests >= settings.min_requests
    if breach is None and comparable and canary_p99 is not None and main_p99 is not None:
        limit = main_p99 * settings.max_p99_ratio + settings.p99_slack_s
        if canary_p99 > limit:
            breach = (
                f"canary p99 latency {canary_p99:g} s is above main's {main_p99:g} s x "
                f"{settings.max_p99_ratio:g} + {settings.p99_slack_s:g} s"
            )
    outliers = None
    if canary.scored_rows > 0 or main.scored_rows > 0:
        outliers = outlier_rate_test(
            canary_rows=canary.scored_rows,
            canary_outliers=canary.outlier_rows,
            main_rows=main.scored_rows,
            main_outliers=main.outlier_rows,
            margin=settings.max_outlier_rate_increase,
            alpha=settings.outlier_alpha,
            min_rows=settings.min_scored_rows,
        )
        if breach is None and outliers.breach:
            breach = outliers.message()
    return OpsCheck(
        canary.requests,
        main.requests,
        canary_rate,
        main_rate,
        canary_p99,
        main_p99,
        enough,
        breach,
        outliers,
    )


class OpsSource(Protocol):
    def snapshot(self) -> IngressSnapshot:
        """The deployment's cumulative per-predictor counts now (``BackendError`` if unavailable)."""
        ...


class HttpOpsSource:
    """Scrapes the ingress's ``/metrics`` over HTTP."""

    def __init__(self, url: str, deployment: str, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.deployment = deployment
        self._client = httpx.Client(timeout=timeout_s)

    def snapshot(self) -> IngressSnapshot:
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as exc:
            raise BackendError(f"ingress metrics at {self.url} unreachable ({exc!r})") from exc
        if response.status_code != 200:
            raise BackendError(f"GET {self.url} -> {response.status_code}: not the ingress's /metrics?")
        try:
            return parse_ingress_metrics(response.text, self.deployment)
        except ValueError as exc:
            raise BackendError(f"{self.url} is not a Prometheus exposition: {exc}") from exc

    def close(self) -> None:
        self._client.close()
