"""An incremental regressor whose preprocessing learns incrementally too.

scikit-learn's ``Pipeline`` has no ``partial_fit``, so this estimator owns its three incremental parts:
a ``StandardScaler`` for the features, a running mean/std for the target, and an ``SGDRegressor`` on the
standardised data. Every ``partial_fit`` updates all three. It is a plain scikit-learn estimator
(``get_params``/``clone`` work), picklable, and importable wherever driftloop is installed, which is
what MLServer needs to unpickle it.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = 40 + X @ np.array([2.0, -1.0, 0.5])
>>> model = IncrementalRegressor(random_state=0).fit(X, y)
>>> float(np.abs(model.predict(X) - y).mean()) < 0.1
True
>>> _ = model.partial_fit(X[:10], y[:10])  # one more incremental step
>>> model.n_samples_seen_
510
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import SGDRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted


class IncrementalRegressor(RegressorMixin, BaseEstimator):
    """Standardise X and y incrementally, then ``SGDRegressor`` — all three with ``partial_fit``.

    The default loss is Huber with ``epsilon`` in standardised target units: sensor spikes in the
    labels (a faulty reading 30 minutes later) pull a squared loss far more than a real change does.
    """

    def __init__(
        self,
        alpha: float = 1e-5,
        eta0: float = 0.03,
        learning_rate: str = "invscaling",
        power_t: float = 0.25,
        epochs: int = 10,
        loss: str = "huber",
        epsilon: float = 0.2,
        random_state: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.eta0 = eta0
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.epochs = epochs
        self.loss = loss
        self.epsilon = epsilon
        self.random_state = random_state

    def _reset(self) -> None:
        self.x_scaler_ = StandardScaler()
        self.y_scaler_ = StandardScaler()
        self.regressor_ = SGDRegressor(
            loss=self.loss,
            epsilon=self.epsilon,
            alpha=self.alpha,
            eta0=self.eta0,
            learning_rate=self.learning_rate,
            power_t=self.power_t,
            random_state=self.random_state,
        )
        self.n_samples_seen_ = 0

    def fit(self, X: Any, y: Any) -> IncrementalRegressor:
        """Start afresh: fit the scalers on all of X/y, then ``epochs`` shuffled passes of SGD."""
        X, y = self._check(X, y)
        self._reset()
        self.x_scaler_.fit(X)
        self.y_scaler_.fit(y.reshape(-1, 1))
        Xs, ys = self._scaled(X, y)
        rng = check_random_state(self.random_state)
        for _ in range(self.epochs):
            order = rng.permutation(len(ys))
            self.regressor_.partial_fit(Xs[order], ys[order])
        self.n_samples_seen_ = len(ys)
        self.n_features_in_ = X.shape[1]
        return self

    def partial_fit(self, X: Any, y: Any) -> IncrementalRegressor:
        """Learn from one more batch: update the scalers, then one SGD pass over the batch."""
        X, y = self._check(X, y)
        if not hasattr(self, "regressor_"):
            self._reset()
            self.n_features_in_ = X.shape[1]
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the model was trained on {self.n_features_in_}")
        self.x_scaler_.partial_fit(X)
        self.y_scaler_.partial_fit(y.reshape(-1, 1))
        Xs, ys = self._scaled(X, y)
        self.regressor_.partial_fit(Xs, ys)
        self.n_samples_seen_ += len(ys)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape [N, {self.n_features_in_}], got {list(X.shape)}")
        ys = self.regressor_.predict(self.x_scaler_.transform(X))
        out: np.ndarray = self.y_scaler_.inverse_transform(ys.reshape(-1, 1)).ravel()
        return out

    def _scaled(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Xs = self.x_scaler_.transform(X)
        ys = self.y_scaler_.transform(y.reshape(-1, 1)).ravel()
        return Xs, ys

    @staticmethod
    def _check(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).ravel()
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be [N, F] and y [N]; got X {list(X.shape)} and y {list(y.shape)}")
        if not (np.isfinite(X).all() and np.isfinite(y).all()):
            raise ValueError("X and y must be finite: drop or impute NaN/inf rows before learning")
        return X, y
