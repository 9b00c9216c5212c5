"""Counters and histograms for the ingress's request path, owned by its event loop.

prometheus_client guards every ``inc``/``observe`` with a lock (~0.8 / ~1.4 us here); the ingress
updates four of them per request, all from its one event-loop thread. These families keep plain
Python numbers instead (~0.1 us per update) and turn them into the same exposition at scrape time, as
a collector registered on the runtime's registry: ``<name>_total`` for counters, ``_bucket`` /
``_count`` / ``_sum`` for histograms. Updates must come from one thread (the loop's); a scrape from
another thread reads numbers the GIL keeps whole.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class LoopCounter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopHistogram:
    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self.counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self._bounds, value)] += 1  # le: a value on a bound counts in it
        self.sum += value


class _Family:
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)

    def _check(self, values: tuple[str, ...]) -> None:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")


class LoopCounterFamily(_Family):
    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__(name, documentation, labelnames)
        self._children: dict[tuple[str, ...], LoopCounter] = {}

    def labels(self, *values: str) -> LoopCounter:
        child = self._children.get(values)
        if child is None:
            self._check(values)
            child = self._children[values] = LoopCounter()
        return child

    def metric(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        return family


class LoopHistogramFamily(_Family):
    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        self._children: dict[tuple[str, ...], LoopHistogram] = {}

    def labels(self, *values: str) -> LoopHistogram:
        child = self._children.get(values)
        if child is None:
            self._check(values)
            child = self._children[values] = LoopHistogram(self.buckets)
        return child

    def metric(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        bounds = [*(repr(b) for b in self.buckets), "+Inf"]
        for values, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, running))
            family.add_metric(values, cumulative, total)
        return family


class LoopMetricsCollector(Collector):
    """Registers the loop-owned families with a ``CollectorRegistry``."""

    def __init__(self, families: Sequence[LoopCounterFamily | LoopHistogramFamily]) -> None:
        self._families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.metric()
