"""Row counters of the runtimes, exported on MLServer's metrics endpoint (``/metrics`` on metrics_port).

MLServer serves Prometheus' default registry when ``parallel_workers=0`` and a multi-process collector
over its workers otherwise; the counter is created lazily so both work.

``driftloop_runtime_rows_total{model, outcome}`` counts every row a runtime saw: ``served``, ``rejected``
(the request got a 4xx), ``imputed``, ``flagged`` (outliers, including non-finite rows under the ``flag``
policy), ``dropped`` (drift rows left out under the ``drop`` policy).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter

ROWS_METRIC = "driftloop_runtime_rows"
_rows: Counter | None = None


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
