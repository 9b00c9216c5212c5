"""IncrementalRegressor: incremental preprocessing, reproducibility, and pickles that name its old home.

The contract every estimator shares is checked in tests/servers/test_estimators.py."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
from driftloop_servers.estimators import IncrementalRegressor
from sklearn.base import clone

import driftloop.learning.features
import driftloop.learning.v2_payload
import driftloop.telemetry.simulator


def data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[50.0, 1000.0, 0.0], scale=[5.0, 100.0, 1.0], size=(n, 3))
    y = 10 + 0.8 * X[:, 0] + 0.01 * X[:, 1] - 2 * X[:, 2] + rng.normal(0, 0.1, n)
    return X, y


def test_same_seed_gives_identical_coefficients_other_seed_does_not() -> None:
    X, y = data()
    a = IncrementalRegressor(random_state=7).fit(X, y)
    b = IncrementalRegressor(random_state=7).fit(X, y)
    c = IncrementalRegressor(random_state=8).fit(X, y)
    np.testing.assert_array_equal(a.regressor_.coef_, b.regressor_.coef_)
    np.testing.assert_array_equal(a.regressor_.intercept_, b.regressor_.intercept_)
    assert not np.array_equal(a.regressor_.coef_, c.regressor_.coef_)


def test_learns_unscaled_features_and_target() -> None:
    X, y = data()
    model = IncrementalRegressor(random_state=0).fit(X, y)
    assert np.abs(model.predict(X) - y).mean() < 0.3


def test_partial_fit_updates_the_scalers_and_follows_a_shift() -> None:
    X, y = data()
    model = IncrementalRegressor(random_state=0).fit(X, y)
    mean_before = model.x_scaler_.mean_.copy()
    shifted_X, shifted_y = X + np.array([10.0, 0.0, 0.0]), y + 15.0  # a regime change: hotter and offset
    before = np.abs(model.predict(shifted_X) - shifted_y).mean()
    for start in range(0, 400, 50):
        model.partial_fit(shifted_X[start : start + 50], shifted_y[start : start + 50])
    after = np.abs(model.predict(shifted_X) - shifted_y).mean()
    assert model.x_scaler_.mean_[0] > mean_before[0] + 4.0
    assert model.n_samples_seen_ == 800
    assert after < before / 2


def test_partial_fit_from_scratch_and_feature_count_check() -> None:
    X, y = data()
    model = IncrementalRegressor(random_state=0)
    for start in range(0, 400, 100):
        model.partial_fit(X[start : start + 100], y[start : start + 100])
    assert model.n_features_in_ == 3
    with pytest.raises(ValueError, match="X has 2 features, the model was trained on 3"):
        model.partial_fit(X[:, :2], y)
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        model.predict(X[:, :2])


def test_refuses_nonfinite_rows() -> None:
    X, y = data()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        IncrementalRegressor().fit(X, y)


def test_pickle_and_clone_round_trip() -> None:
    X, y = data()
    model = IncrementalRegressor(random_state=0, epochs=3).fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    fresh = clone(model)
    assert fresh.get_params() == model.get_params() and not hasattr(fresh, "regressor_")


@pytest.mark.parametrize(
    "module",
    [
        driftloop.learning.features,
        driftloop.learning.v2_payload,
        driftloop.telemetry.simulator,
    ],
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


def test_a_pickle_naming_the_old_module_still_loads() -> None:
    """Versions registered before the move pickled ``driftloop.learning.estimator.IncrementalRegressor``;
    that path re-exports the class so MLServer still loads them. (Protocol 0 names classes in plain
    text lines, so the old pickle is made by renaming the module in a new one.)"""
    X, y = data()
    model = IncrementalRegressor(random_state=0, epochs=2).fit(X, y)
    new = pickle.dumps(model, protocol=0)
    assert b"driftloop_servers.estimators\nIncrementalRegressor" in new
    old = new.replace(b"driftloop_servers.estimators\n", b"driftloop.learning.estimator\n")
    restored = pickle.loads(old)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
