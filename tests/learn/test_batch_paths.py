"""The trainer's batch-at-a-time paths give exactly what their one-at-a-time definitions give.

Each was a per-example Python loop in the hot path (``bench trainer``); these pin them to the rule
they replace: the label-latency histogram against ``prometheus_client.Histogram``, the data window's
``add_rows`` against ``add_example`` per row, ``digest_of`` against ``id_digest`` per id, the
degradation monitor's batch ``add`` against adding one loss at a time.
"""

from __future__ import annotations

import numpy as np
from driftloop_feedback.learn.batch_histogram import BatchHistogram
from driftloop_feedback.learn.policy import DegradationMonitor
from driftloop_feedback.learn.state import DIGEST_MOD, digest_of, id_digest
from driftloop_feedback.learn.window import DataWindow
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tests.learn.test_policy import settings

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without the ``_created`` timestamp (the two were made at other instants)."""
    return [line for line in generate_latest(registry).decode().splitlines() if "_created " not in line]


def test_batch_histogram_exposes_what_prometheus_histogram_does() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.exponential(5.0, 500), np.asarray(BUCKETS, dtype=float), [-1.0, 0.0, 1e9, float("inf")]]
    )
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "doc", buckets=BUCKETS, registry=one_by_one)
    histogram = BatchHistogram("lat_seconds", "doc", buckets=BUCKETS, registry=batched)
    for part in np.array_split(values, 7):  # several batches, one of them possibly empty
        for value in part.tolist():
            reference.observe(value)
        histogram.observe_many(part)
    histogram.observe_many(np.asarray([]))
    assert _exposition(batched) == _exposition(one_by_one)
    assert 'lat_seconds_bucket{le="0.05"}' in "\n".join(_exposition(batched))
    assert "lat_seconds_created" in generate_latest(batched).decode()


def test_batch_histogram_refuses_unsorted_buckets() -> None:
    try:
        BatchHistogram("x_seconds", "doc", buckets=(1.0, 0.5), registry=CollectorRegistry())
    except ValueError as exc:
        assert "increasing" in str(exc)
    else:
        raise AssertionError("unsorted buckets accepted")


def test_window_add_rows_equals_add_example_per_row() -> None:
    rng = np.random.default_rng(1)
    partitions = rng.integers(0, 4, 300)
    offsets = np.zeros(300, dtype=np.int64)
    for p in range(4):  # ascending within each partition, interleaved across them
        mine = partitions == p
        offsets[mine] = 10 * p + np.arange(mine.sum())
    ids = [f"r{i}:0" for i in range(300)]
    times = rng.uniform(0, 100, 300)
    sources = [f"driftloop.labelled/{p}" for p in partitions.tolist()]
    per_row, batched = DataWindow(10), DataWindow(10)
    for i in range(300):
        per_row.add_example(
            ids[i], float(times[i]), "driftloop.labelled", int(partitions[i]), int(offsets[i])
        )
    for lo, hi in ((0, 17), (17, 200), (200, 300)):
        batched.add_rows(ids[lo:hi], times[lo:hi], sources[lo:hi], offsets[lo:hi])
    assert batched.params() == per_row.params()
    assert batched.count == per_row.count == 300


def test_digest_of_is_the_sum_of_id_digests() -> None:
    ids = [f"r{i}:{i % 3}" for i in range(1000)]
    assert digest_of(ids) == sum(map(id_digest, ids)) % DIGEST_MOD
    assert digest_of([]) == 0


def test_degradation_monitor_batch_add_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(2)
    losses = rng.exponential(1.0, 900).tolist()
    for baseline in (None, 0.8):
        one, batch = (DegradationMonitor(settings(), baseline) for _ in range(2))
        for loss in losses:
            one.add([loss])
        for lo in range(0, 900, 128):
            batch.add(losses[lo : lo + 128])
        assert (one.baseline, one.mean, one.lower_bound()) == (
            batch.baseline,
            batch.mean,
            batch.lower_bound(),
        )
