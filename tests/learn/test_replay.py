"""The replay buffer: a uniform reservoir, the configured ratio, and a restored buffer draws the same."""

from __future__ import annotations

import pickle

import numpy as np
from driftloop_feedback.learn.replay import ReplayBuffer


def test_the_reservoir_keeps_a_uniform_sample_of_everything_offered() -> None:
    buffer = ReplayBuffer(capacity=500, ratio=1.0, seed=1)
    for start in range(0, 10_000, 100):  # ten regimes of 1000 rows, labelled by regime
        X = np.full((100, 1), float(start // 1000))
        buffer.offer(X, X[:, 0])
    drawn = buffer.draw(5000)
    assert drawn is not None and len(buffer) == 500
    counts = np.bincount(drawn[1].astype(int), minlength=10)
    assert counts.min() > 300  # each old regime keeps about a tenth of the replayed rows (500 each)


def test_the_long_run_ratio_is_exact_with_fractional_ratios() -> None:
    buffer = ReplayBuffer(capacity=100, ratio=0.3, seed=0)
    buffer.offer(np.zeros((100, 2)), np.zeros(100))
    drawn = [buffer.draw(7) for _ in range(100)]
    assert sum(0 if d is None else len(d[1]) for d in drawn) == 210  # 0.3 * 700


def test_a_pickled_buffer_draws_what_the_original_would() -> None:
    buffer = ReplayBuffer(capacity=50, ratio=0.5, seed=3)
    buffer.offer(np.arange(200.0).reshape(100, 2), np.arange(100.0))
    copy = pickle.loads(pickle.dumps(buffer))
    a, b = buffer.draw(40), copy.draw(40)
    assert a is not None and b is not None
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_ratio_zero_or_empty_buffer_replays_nothing() -> None:
    assert ReplayBuffer(capacity=10, ratio=0.0).draw(100) is None
    assert ReplayBuffer(capacity=10, ratio=1.0).draw(100) is None
    keepnone = ReplayBuffer(capacity=0, ratio=1.0)
    keepnone.offer(np.zeros((5, 1)), np.zeros(5))
    assert keepnone.draw(5) is None and keepnone.offered == 5


def test_string_labels_are_kept() -> None:
    buffer = ReplayBuffer(capacity=10, ratio=1.0, seed=0)
    buffer.offer(np.zeros((3, 1)), np.array(["UP", "DOWN", "UP"]))
    drawn = buffer.draw(3)
    assert drawn is not None and set(drawn[1]) <= {"UP", "DOWN"}
