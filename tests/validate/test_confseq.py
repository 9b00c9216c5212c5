"""The confidence sequence: batch and one-at-a-time agree, the state does not grow, bad values refused."""

from __future__ import annotations

import doctest
import pickle

import driftloop_feedback.validate.confseq
import driftloop_feedback.validate.sequential
import driftloop_feedback.validate.validator
import numpy as np
import pytest
from driftloop_feedback.validate import BoundedMeanCS
from hypothesis import given, settings
from hypothesis import strategies as st

unit_values = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=60, deadline=None)
@given(values=unit_values, cut=st.integers(0, 200))
def test_batches_and_single_values_give_the_same_bounds(values: list[float], cut: int) -> None:
    one = BoundedMeanCS(alpha=0.1)
    for v in values:
        one.update(v)
    two = BoundedMeanCS(alpha=0.1)
    two.update_many(values[:cut])
    two.update_many(values[cut:])
    assert one.n == two.n == len(values)
    np.testing.assert_allclose(one.bounds(), two.bounds(), rtol=1e-9, atol=1e-12)


def test_bounds_after_each_value_of_a_batch_are_the_running_ones() -> None:
    x = np.random.default_rng(3).uniform(size=300)
    batch = BoundedMeanCS().update_many(x)
    seq = BoundedMeanCS()
    for i, v in enumerate(x):
        assert seq.update(v) == pytest.approx((batch.lower[i], batch.upper[i]), abs=1e-12)
    assert np.all(np.diff(batch.lower) >= 0) and np.all(np.diff(batch.upper) <= 0)  # running intersection


def test_commit_adds_only_the_first_k_values_of_a_scan() -> None:
    x = np.random.default_rng(4).uniform(size=100)
    cs = BoundedMeanCS()
    batch = cs.scan(x)
    assert cs.n == 0 and cs.bounds() == (0.0, 1.0)
    cs.commit(batch, 40)
    reference = BoundedMeanCS()
    reference.update_many(x[:40])
    assert cs.n == 40 and cs.bounds() == pytest.approx(reference.bounds())
    with pytest.raises(ValueError, match="scanned at n=0, the sequence is at n=40"):
        cs.commit(batch, 10)


def test_state_stays_the_same_size_however_many_values() -> None:
    """O(1) per value: nothing of the history is kept. The state is a fixed set of plain numbers (no
    arrays, no lists, no __dict__ to grow), the same after 10 values as after 100 000."""
    small, large = BoundedMeanCS(), BoundedMeanCS()
    small.update_many(np.full(10, 0.3))
    large.update_many(np.random.default_rng(5).uniform(size=100_000))
    assert not hasattr(large, "__dict__")
    for cs in (small, large):
        state = pickle.loads(pickle.dumps({k: getattr(cs, k) for k in BoundedMeanCS.__slots__}))
        assert {type(v) for v in state.values()} <= {int, float}
    assert large.n == 100_000


def test_covers_a_known_mean_and_narrows() -> None:
    rng = np.random.default_rng(6)
    cs = BoundedMeanCS(alpha=0.05)
    widths = []
    for _ in range(10):
        cs.update_many(rng.beta(2, 5, size=1000))  # mean 2/7
        lo, hi = cs.bounds()
        assert lo <= 2 / 7 <= hi
        widths.append(hi - lo)
    assert widths[-1] < widths[0] / 2 and widths[-1] < 0.03


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan"), float("inf")])
def test_values_outside_unit_interval_are_refused(bad: float) -> None:
    cs = BoundedMeanCS()
    with pytest.raises(ValueError, match=r"finite and in \[0, 1\]"):
        cs.update_many([0.5, bad])
    assert cs.n == 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="alpha"):
        BoundedMeanCS(alpha=1.0)
    with pytest.raises(ValueError, match="truncation"):
        BoundedMeanCS(truncation=1.0)


@pytest.mark.parametrize(
    "module",
    [
        driftloop_feedback.validate.confseq,
        driftloop_feedback.validate.sequential,
        driftloop_feedback.validate.validator,
    ],
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
