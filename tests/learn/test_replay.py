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


def _one_row_at_a_time(capacity: int, seed: int, offers: list[np.ndarray]) -> np.ndarray:
    """Algorithm R offered row by row, taking each offer's uniforms as ``ReplayBuffer.offer`` draws them
    (one ``random`` call per offer, for the rows past the fill): row k replaces slot floor(u * k) if that
    is below the capacity."""
    rng = np.random.default_rng(seed)
    reservoir: list[float] = []
    k = 0
    for rows in offers:
        values = rows.tolist()
        fill = min(capacity - len(reservoir), len(values))
        reservoir.extend(values[:fill])
        k += fill
        uniforms = rng.random(len(values) - fill).tolist() if fill < len(values) else []
        for value, u in zip(values[fill:], uniforms, strict=True):
            k += 1
            slot = int(u * k)
            if slot < capacity:
                reservoir[slot] = value
    return np.asarray(reservoir)


def test_a_batch_offer_keeps_what_offering_its_rows_one_by_one_keeps() -> None:
    """The vectorised offer (slots for a whole batch at once, the last of rows drawing one slot stays)
    equals algorithm R row by row with the same uniforms; a small capacity makes shared slots common."""
    offers = [np.arange(start, start + size, dtype=float) for start, size in ((0, 7), (7, 30), (37, 200))]
    offers += [np.arange(237.0 + 64 * i, 301.0 + 64 * i) for i in range(40)]
    for capacity in (5, 20, 100):
        buffer = ReplayBuffer(capacity=capacity, ratio=0.0, seed=11)
        for rows in offers:
            buffer.offer(rows.reshape(-1, 1), rows)
        assert buffer._y is not None
        np.testing.assert_array_equal(buffer._y[: len(buffer)], _one_row_at_a_time(capacity, 11, offers))


def test_draws_are_uniform_over_the_reservoir() -> None:
    buffer = ReplayBuffer(capacity=10, ratio=1.0, seed=2)
    buffer.offer(np.arange(10.0).reshape(-1, 1), np.arange(10.0))
    drawn = [buffer.draw(100) for _ in range(100)]
    counts = np.bincount(np.concatenate([d[1] for d in drawn if d is not None]).astype(int), minlength=10)
    assert counts.sum() == 10_000 and counts.min() > 850 and counts.max() < 1150  # 1000 each, sd ~30
