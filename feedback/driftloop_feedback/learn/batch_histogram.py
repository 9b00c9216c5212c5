"""A Prometheus histogram that takes a whole batch of observations in one call.

``prometheus_client.Histogram.observe`` takes one value (a Python call, a lock and a bucket search per
value); the trainer observes a label latency for every example it learns, which cost a few us per
example. ``BatchHistogram.observe_many`` counts a batch with one ``np.searchsorted`` and ``np.bincount``.
It is exposed through the client's public collector interface (``HistogramMetricFamily``) with the same
samples as ``Histogram``: cumulative ``_bucket{le=...}`` (``le`` "+Inf" last), ``_count``, ``_sum`` and
``_created``. Bucket rule as Prometheus's: a value lands in the first bucket whose upper bound is >= it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class BatchHistogram(Collector):
    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError(f"buckets must be strictly increasing, got {list(buckets)}")
        if bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(bounds)
        self._counts = np.zeros(len(bounds), dtype=np.int64)  # per bucket, not cumulative
        self._sum = 0.0
        self._created = time.time()
        self._lock = threading.Lock()  # the /metrics thread collects while the worker observes
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Count every value of ``values`` (one observation each)."""
        values = np.asarray(values, dtype=float).ravel()
        if not values.size:
            return
        # side="left": the first bound >= value (a value equal to a bound is in that bucket)
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds))
        total = float(values.sum())
        with self._lock:
            self._counts += counts[: len(self._bounds)]
            self._sum += total

    def observe(self, value: float) -> None:
        self.observe_many(np.asarray([value]))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=[
                (floatToGoString(b), float(c)) for b, c in zip(self._bounds.tolist(), cumulative, strict=True)
            ],
            sum_value=total,
        )
        yield family
        yield GaugeMetricFamily(f"{self.name}_created", self.documentation, value=self._created)
