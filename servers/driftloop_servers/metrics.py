"""Row counters of the runtimes, exported on MLServer's metrics endpoint (``/metrics`` on metrics_port).

MLServer serves Prometheus' default registry when ``parallel_workers=0`` and a multi-process collector
over its workers otherwise; the counter is created lazily so both work.

``driftloop_runtime_rows_total{model, outcome}`` counts every row a runtime saw: ``served``, ``rejected``
(the request got a 4xx), ``imputed``, ``flagged`` (outliers, including non-finite rows under the ``flag``
policy), ``dropped`` (drift rows left out under the ``drop`` policy).

The outlier runtime also counts, for the rollout's outlier-rate gate on a cluster (read from Prometheus by
``driftloop_feedback.rollout.prometheus_ops``), the rows it scored and flagged per predictor:
``driftloop_outlier_scored_rows_total`` and ``driftloop_outlier_flagged_rows_total``, labelled ``model``
(the node), ``deployment_name`` and ``predictor_name`` (the SeldonDeployment and predictor, from the
``SELDON_DEPLOYMENT_ID`` and ``PREDICTOR_ID`` variables Seldon Core v1's operator sets in every graph
container; empty when unset), the label names of Seldon's executor metrics. They are plain
``prometheus_client`` counters, not ``mlserver.log`` histograms: MLServer 1.7.1 serves metrics registered
through ``mlserver.register``/``mlserver.log`` only with ``parallel_workers`` > 0 (MLServer#1151), and the
SeldonDeployment runs its nodes with ``parallel_workers`` 0.

Online learning (``POST /v2/models/<m>/learn``, docs/runtimes.md) counts
``driftloop_online_learned_rows_total{model}`` (rows the served estimator learned in place) and
``driftloop_online_learn_refused_total{model, reason}`` (calls refused with a 4xx, by reason: ``disabled``,
``unknown_model``, ``body``, ``features``, ``features_nonfinite``, ``truth_missing``, ``truth_invalid``,
``truth_rows``, ``truth_nonfinite``, ``unknown_class``, ``estimator``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter

ROWS_METRIC = "driftloop_runtime_rows"
SCORED_ROWS_METRIC = "driftloop_outlier_scored_rows"
FLAGGED_ROWS_METRIC = "driftloop_outlier_flagged_rows"
LEARNED_ROWS_METRIC = "driftloop_online_learned_rows"
LEARN_REFUSED_METRIC = "driftloop_online_learn_refused"
PREDICTOR_LABELS = ("model", "deployment_name", "predictor_name")
_rows: Counter | None = None
_outlier_rows: dict[str, Counter] = {}
_learning: dict[str, Counter] = {}


def rows_counter() -> Counter:
    """Created on first use, not at import: MLServer switches Prometheus to multi-process values in
    each worker before models load, and only metrics created after that are aggregated."""
    global _rows
    if _rows is None:
        _rows = Counter(
            ROWS_METRIC,
            "Rows seen by driftloop runtimes, by outcome",
            labelnames=["model", "outcome"],
            registry=REGISTRY,
        )
    return _rows


def count_rows(model: str, outcome: str, n: int) -> None:
    if n > 0:
        rows_counter().labels(model=model, outcome=outcome).inc(n)


def rows_counted(model: str, outcome: str) -> float:
    """Current value of one counter in this process (for tests and diagnostics)."""
    value = REGISTRY.get_sample_value(f"{ROWS_METRIC}_total", {"model": model, "outcome": outcome})
    return float(value or 0.0)


@dataclass(frozen=True)
class PredictorIdentity:
    """Where a runtime serves: its SeldonDeployment and predictor (empty outside Seldon Core v1)."""

    deployment: str = ""
    predictor: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> PredictorIdentity:
        """From ``SELDON_DEPLOYMENT_ID`` / ``PREDICTOR_ID`` (set by Seldon's operator in each container)."""
        return cls(environ.get("SELDON_DEPLOYMENT_ID", ""), environ.get("PREDICTOR_ID", ""))


def _outlier_counter(name: str, description: str) -> Counter:
    """Created on first use, like ``rows_counter`` (multi-process values with parallel workers)."""
    counter = _outlier_rows.get(name)
    if counter is None:
        counter = Counter(name, description, labelnames=list(PREDICTOR_LABELS), registry=REGISTRY)
        _outlier_rows[name] = counter
    return counter


def outlier_row_counters(model: str, where: PredictorIdentity) -> tuple[Counter, Counter]:
    """The (scored, flagged) row counters of one outlier node, created at 0 so that Prometheus sees the
    series before the first request."""
    labels = {"model": model, "deployment_name": where.deployment, "predictor_name": where.predictor}
    scored = _outlier_counter(SCORED_ROWS_METRIC, "Rows the outlier node scored, per predictor")
    flagged = _outlier_counter(
        FLAGGED_ROWS_METRIC, "Rows the outlier node flagged as outliers, per predictor"
    )
    return scored.labels(**labels), flagged.labels(**labels)


def _learning_counter(name: str, description: str, labelnames: list[str]) -> Counter:
    """Created on first use, like ``rows_counter`` (multi-process values with parallel workers)."""
    counter = _learning.get(name)
    if counter is None:
        counter = Counter(name, description, labelnames=labelnames, registry=REGISTRY)
        _learning[name] = counter
    return counter


def count_learned(model: str, n: int) -> None:
    """``n`` rows learned online by ``model`` (``n`` = 0 creates the series at 0)."""
    counter = _learning_counter(
        LEARNED_ROWS_METRIC, "Rows the served estimator learned in place (online learning)", ["model"]
    )
    counter.labels(model=model).inc(n)


def count_learn_refused(model: str, reason: str) -> None:
    counter = _learning_counter(
        LEARN_REFUSED_METRIC, "Online-learning calls refused with a 4xx, by reason", ["model", "reason"]
    )
    counter.labels(model=model, reason=reason).inc()


def learning_counted(model: str, reason: str | None = None) -> float:
    """This process's learned rows of ``model`` or, with ``reason``, its refused calls (tests)."""
    if reason is None:
        value = REGISTRY.get_sample_value(f"{LEARNED_ROWS_METRIC}_total", {"model": model})
    else:
        value = REGISTRY.get_sample_value(f"{LEARN_REFUSED_METRIC}_total", {"model": model, "reason": reason})
    return float(value or 0.0)
