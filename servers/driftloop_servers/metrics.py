"""Row counters of the runtimes, exported on MLServer's metrics endpoint (``/metrics``).

Counters are created lazily in MLServer's own registry, which is what MLServer's multi-process mode needs
(``parallel_workers`` > 0 aggregates per-worker values); with ``parallel_workers=0`` they live in-process.

``driftloop_runtime_rows_total{model, outcome}`` counts every row a runtime saw: ``served``, ``rejected``
(the request got a 4xx), ``imputed``, ``flagged`` (outliers, including non-finite rows under the ``flag``
policy), ``dropped`` (drift rows left out under the ``drop`` policy).
"""

from __future__ import annotations

from mlserver.metrics import REGISTRY
from prometheus_client import Counter

ROWS_METRIC = "driftloop_runtime_rows"


def rows_counter() -> Counter:
    if ROWS_METRIC in REGISTRY:
        existing: Counter = REGISTRY.get(ROWS_METRIC)
        return existing
    return Counter(
        ROWS_METRIC,
        "Rows seen by driftloop runtimes, by outcome",
        labelnames=["model", "outcome"],
        registry=REGISTRY,
    )


def count_rows(model: str, outcome: str, n: int) -> None:
    if n > 0:
        rows_counter().labels(model=model, outcome=outcome).inc(n)


def rows_counted(model: str, outcome: str) -> float:
    """Current value of one counter (for tests and diagnostics)."""
    value = REGISTRY.get_sample_value(f"{ROWS_METRIC}_total", {"model": model, "outcome": outcome})
    return float(value or 0.0)
