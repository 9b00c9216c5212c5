"""The loop-owned metric families expose what prometheus_client's own would, and puids are v4 UUIDs."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable

import pytest
from driftloop_graphs import _httpfast, puid
from driftloop_graphs.loop_metrics import LoopCounterFamily, LoopHistogramFamily, LoopMetricsCollector
from driftloop_graphs.puid import PuidSource
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.001, 0.002, 0.005, 0.01, 1.0)
VALUES = [0.0005, 0.001, 0.0015, 0.002, 0.004, 0.02, 3.0, 0.001]


def _without_created(text: bytes) -> list[str]:
    return [ln for ln in text.decode().splitlines() if "_created" not in ln]


def test_same_exposition_as_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = LoopCounterFamily("t_requests", "Requests", ("predictor", "code"))
    histogram = LoopHistogramFamily("t_seconds", "Latency", ("predictor",), BUCKETS)
    ours.register(LoopMetricsCollector((counter, histogram)))
    peer_counter = Counter("t_requests", "Requests", ("predictor", "code"), registry=theirs)
    peer_histogram = Histogram("t_seconds", "Latency", ("predictor",), buckets=BUCKETS, registry=theirs)
    for predictor in ("main", "canary"):
        for i, value in enumerate(VALUES):
            code = "200" if i % 3 else "503"
            counter.labels(predictor, code).inc()
            peer_counter.labels(predictor, code).inc()
            histogram.labels(predictor).observe(value)
            peer_histogram.labels(predictor).observe(value)
    counter.labels("main", "200").inc(2.5)
    peer_counter.labels("main", "200").inc(2.5)
    assert _without_created(generate_latest(ours)) == _without_created(generate_latest(theirs))
    text = generate_latest(ours).decode()
    assert 't_seconds_bucket{le="0.001",predictor="main"} 3.0' in text  # a value on a bound counts in it
    assert 't_seconds_bucket{le="+Inf",predictor="main"} 8.0' in text


def test_wrong_label_count_is_refused() -> None:
    counter = LoopCounterFamily("t_requests", "Requests", ("predictor", "code"))
    try:
        counter.labels("main")
    except ValueError as exc:
        assert "takes labels ('predictor', 'code')" in str(exc)
    else:
        raise AssertionError("one label value for two label names was accepted")


PUID_SOURCES: dict[str, Callable[[], Callable[[], str]]] = {
    "python": PuidSource,
    "c": lambda: _httpfast.new_puid,
}


def test_the_runtime_draws_puids_from_the_built_c_source() -> None:
    assert puid.new_puid is _httpfast.new_puid


@pytest.mark.parametrize("kind", sorted(PUID_SOURCES))
def test_puids_are_distinct_version_4_uuids(kind: str) -> None:
    source = PUID_SOURCES[kind]()
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    seen = set()
    for _ in range(20_000):  # several refills of the random pool
        puid = source()
        assert pattern.match(puid), puid
        parsed = uuid.UUID(puid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == puid
        seen.add(puid)
    assert len(seen) == 20_000


@pytest.mark.parametrize("kind", sorted(PUID_SOURCES))
def test_a_forked_child_draws_its_own_puids(kind: str) -> None:
    source = PUID_SOURCES[kind]()
    source()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report the next id and leave at once
        os.write(write, source().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != source()
    assert uuid.UUID(child).version == 4
