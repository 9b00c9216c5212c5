"""driftloop's incremental estimators: what a served model's pickle refers to, so they live where the
serving image has them (the MLServer runtimes' package), not in the training side.

scikit-learn's ``Pipeline`` has no ``partial_fit``, so each estimator owns its incremental parts: a
``StandardScaler`` for the features and an SGD model on the standardised data (the regressor also keeps a
running mean/std of the target). Every ``partial_fit`` updates all of them. They are plain scikit-learn
estimators (``get_params``/``clone`` work), picklable, and both count what they learned in
``n_samples_seen_`` (the trainer checks exactly-once learning with it).

- ``IncrementalRegressor``: real-valued targets (the forecaster).
- ``IncrementalClassifier``: class labels, with ``predict_proba``; its classes are declared up front
  (``partial_fit(X, y, classes=...)`` on the first call, or every class present in ``fit``'s ``y``).
- ``WindowRegressor`` / ``WindowClassifier``: gradient-boosted trees (scikit-learn's
  ``HistGradientBoosting*``) refit on a sliding window of the last ``window`` labelled rows every
  ``refit_every`` rows. The same contract: ``partial_fit`` (append, refit on schedule),
  ``n_samples_seen_``, classes declared up front, picklable; so the trainer and the validator treat
  them like the SGD models.

Pickles registered before this module existed name ``driftloop.learning.estimator.IncrementalRegressor``;
that module re-exports the class so they still load.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(500, 3)); y = 40 + X @ np.array([2.0, -1.0, 0.5])
>>> model = IncrementalRegressor(random_state=0).fit(X, y)
>>> float(np.abs(model.predict(X) - y).mean()) < 0.1
True
>>> _ = model.partial_fit(X[:10], y[:10])  # one more incremental step
>>> model.n_samples_seen_
510
>>> labels = np.where(X[:, 0] > 0, "hot", "ok")
>>> clf = IncrementalClassifier(random_state=0)
>>> _ = clf.partial_fit(X[:100], labels[:100], classes=["ok", "hot"])
>>> _ = clf.partial_fit(X[100:], labels[100:])  # classes known from the first call
>>> clf.classes_.tolist(), clf.n_samples_seen_
(['hot', 'ok'], 500)
>>> clf.predict_proba(X[:2]).shape
(2, 2)
>>> float((clf.predict(X) == labels).mean()) > 0.9
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

__all__ = ["IncrementalClassifier", "IncrementalRegressor", "WindowClassifier", "WindowRegressor"]

PROBABILISTIC_LOSSES = ("log_loss", "modified_huber")  # SGDClassifier losses with predict_proba


def _check_features(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be [N, F]; got shape {list(X.shape)}")
    if not np.isfinite(X).all():
        raise ValueError("X must be finite: drop or impute NaN/inf rows before learning")
    return X


def _check_width(X: np.ndarray, n_features: int, verb: str) -> None:
    if X.shape[1] != n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, the model was trained on {n_features}; {verb} needs X of "
            f"shape [N, {n_features}] in the training column order"
        )


def _check_labels(y: np.ndarray, declared: np.ndarray) -> None:
    unknown = np.setdiff1d(np.unique(y), declared)
    if unknown.size:
        raise ValueError(
            f"y holds label(s) {unknown.tolist()[:10]} outside the declared classes {declared.tolist()}"
        )


def _predict_features(estimator: Any, X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X must have shape [N, {estimator.n_features_in_}], got {list(X.shape)}")
    return X


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
        else:
            _check_width(X, self.n_features_in_, "partial_fit")
        self.x_scaler_.partial_fit(X)
        self.y_scaler_.partial_fit(y.reshape(-1, 1))
        Xs, ys = self._scaled(X, y)
        self.regressor_.partial_fit(Xs, ys)
        self.n_samples_seen_ += len(ys)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        X = _predict_features(self, X)
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


class IncrementalClassifier(ClassifierMixin, BaseEstimator):
    """Standardise X incrementally, then ``SGDClassifier`` with a probabilistic loss.

    The classes are fixed when learning starts: ``fit`` takes them from ``y`` (or ``classes=``), the
    first ``partial_fit`` must name them in ``classes=`` (a stream's first batch rarely shows every
    class). ``classes_`` holds them sorted, which is also the column order of ``predict_proba``.
    Labels may be numbers or strings.
    """

    def __init__(
        self,
        alpha: float = 1e-4,
        eta0: float = 0.01,
        learning_rate: str = "optimal",
        power_t: float = 0.5,
        epochs: int = 10,
        loss: str = "log_loss",
        random_state: int | None = None,
    ) -> None:
        self.alpha = alpha
        self.eta0 = eta0
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.epochs = epochs
        self.loss = loss
        self.random_state = random_state

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        classes: np.ndarray = self.classifier_.classes_
        return classes

    def _reset(self, classes: np.ndarray, n_features: int) -> None:
        if self.loss not in PROBABILISTIC_LOSSES:
            raise ValueError(
                f"loss={self.loss!r} gives no class probabilities; "
                f"use one of {', '.join(PROBABILISTIC_LOSSES)}"
            )
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes.tolist()}")
        self.x_scaler_ = StandardScaler()
        self.classifier_ = SGDClassifier(
            loss=self.loss,
            alpha=self.alpha,
            eta0=self.eta0,
            learning_rate=self.learning_rate,
            power_t=self.power_t,
            random_state=self.random_state,
        )
        self.declared_classes_ = classes
        self.n_features_in_ = n_features
        self.n_samples_seen_ = 0

    def fit(self, X: Any, y: Any, classes: Sequence[Any] | None = None) -> IncrementalClassifier:
        """Start afresh with ``classes`` (default: those in ``y``): fit the scaler on all of X, then
        ``epochs`` shuffled passes of SGD."""
        X, y = self._check(X, y)
        declared = self._declared(classes) if classes is not None else np.unique(y)
        self._reset(declared, X.shape[1])
        self._check_labels(y)
        self.x_scaler_.fit(X)
        Xs = self.x_scaler_.transform(X)
        rng = check_random_state(self.random_state)
        for _ in range(self.epochs):
            order = rng.permutation(len(y))
            self.classifier_.partial_fit(Xs[order], y[order], classes=declared)
        self.n_samples_seen_ = len(y)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Sequence[Any] | None = None) -> IncrementalClassifier:
        """Learn from one more batch: update the scaler, then one SGD pass over the batch. The first
        call needs ``classes=`` (every label the model may ever see); later calls may repeat them."""
        X, y = self._check(X, y)
        if not hasattr(self, "classifier_"):
            if classes is None:
                raise ValueError(
                    "the first partial_fit of an IncrementalClassifier needs classes=[...]: every label "
                    "the model may ever see, declared up front"
                )
            self._reset(self._declared(classes), X.shape[1])
        else:
            _check_width(X, self.n_features_in_, "partial_fit")
            if classes is not None and not np.array_equal(self._declared(classes), self.declared_classes_):
                raise ValueError(
                    f"classes={list(classes)} differ from the classes declared when learning started "
                    f"({self.declared_classes_.tolist()}); a model's classes cannot change"
                )
        self._check_labels(y)
        self.x_scaler_.partial_fit(X)
        self.classifier_.partial_fit(self.x_scaler_.transform(X), y, classes=self.declared_classes_)
        self.n_samples_seen_ += len(y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [N, C], columns in ``classes_`` order."""
        check_is_fitted(self, "classifier_")
        proba: np.ndarray = self.classifier_.predict_proba(
            self.x_scaler_.transform(_predict_features(self, X))
        )
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (ties: the first in ``classes_``)."""
        labels: np.ndarray = self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return labels

    @staticmethod
    def _declared(classes: Sequence[Any]) -> np.ndarray:
        declared = np.unique(np.asarray(classes))
        if len(declared) != len(classes):
            raise ValueError(f"classes={list(classes)} lists a class twice")
        return declared

    def _check_labels(self, y: np.ndarray) -> None:
        _check_labels(y, self.declared_classes_)

    @staticmethod
    def _check(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X = _check_features(X)
        y = np.asarray(y).ravel()
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be [N, F] and y [N]; got X {list(X.shape)} and y {list(y.shape)}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y must hold class labels, not NaN/inf: drop unlabelled rows before learning")
        return X, y


_THREADPOOLS: list[ThreadpoolController] = []  # made on first use, after the OpenMP runtime is loaded


def _openmp_threads(n_threads: int | None) -> Any:
    """A context limiting OpenMP (the trees' fit and predict) to ``n_threads``; None: the default.

    On a busy machine OpenMP's default (one thread per core, spinning) makes a tree fit or a 1-row
    predict 20-30x slower (measured: 2000 rows, 50 trees: 0.8 s on one thread, 23 s on the default)."""
    if n_threads is None:
        return contextlib.nullcontext()
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=int(n_threads), user_api="openmp")


class _SlidingWindow(BaseEstimator):
    """What both window models share: the last ``window`` labelled rows, and a refit of a batch model
    on them once ``refit_every`` rows were appended since the last refit (or at once while nothing is
    fitted yet). ``partial_fit`` is the incremental contract: append, maybe refit, count."""

    def __init__(
        self,
        window: int = 3000,
        refit_every: int = 50,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 20,
        l2_regularization: float = 0.0,
        n_threads: int | None = 1,
        random_state: int | None = None,
    ) -> None:
        self.window = window
        self.refit_every = refit_every
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.n_threads = n_threads
        self.random_state = random_state

    def _boosting_params(self) -> dict[str, Any]:
        """The gradient-boosting settings both window models pass to their batch model."""
        return {
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
            "early_stopping": False,
            "random_state": self.random_state,
        }

    def _check_schedule(self) -> None:
        if int(self.window) < 1 or int(self.refit_every) < 1:
            raise ValueError(
                f"window={self.window} and refit_every={self.refit_every} must both be >= 1 "
                "(rows kept, rows learned between refits)"
            )

    def _start(self, n_features: int) -> None:
        self._check_schedule()
        self.X_window_ = np.empty((0, n_features))
        self.y_window_: np.ndarray | None = None
        self.n_features_in_ = n_features
        self.n_samples_seen_ = 0
        self.since_refit_ = 0
        self.refits_ = 0

    def _append(self, X: np.ndarray, y: np.ndarray) -> None:
        keep = int(self.window)
        y_all = y if self.y_window_ is None else np.concatenate([self.y_window_, y])
        self.X_window_ = np.concatenate([self.X_window_, X])[-keep:]
        self.y_window_ = y_all[-keep:]
        self.n_samples_seen_ += len(y)
        self.since_refit_ += len(y)
        if self.refits_ == 0 or self.since_refit_ >= int(self.refit_every):
            with _openmp_threads(self.n_threads):
                self._refit(self.X_window_, self.y_window_)
            self.refits_ += 1
            self.since_refit_ = 0

    def _refit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError


class WindowRegressor(RegressorMixin, _SlidingWindow):
    """``HistGradientBoostingRegressor`` refit on a sliding window of the last ``window`` labelled rows,
    every ``refit_every`` rows learned. Between refits the served model does not change, so a stream
    served in order costs one refit per ``refit_every`` labels, not one per label. ``n_threads``
    limits OpenMP in fit and predict (default 1; None leaves the library's default).

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 2)); y = np.where(X[:, 0] > 0, 10.0, -10.0) + X[:, 1]
    >>> model = WindowRegressor(window=400, refit_every=100, random_state=0).fit(X[:300], y[:300])
    >>> _ = model.partial_fit(X[300:350], y[300:350])  # appended, no refit yet
    >>> model.refits_, model.n_samples_seen_
    (1, 350)
    >>> _ = model.partial_fit(X[350:400], y[350:400])  # 100 rows since the last refit: refit
    >>> model.refits_, len(model.y_window_)
    (2, 400)
    >>> float(np.abs(model.predict(X[400:]) - y[400:]).mean()) < 2.0
    True
    """

    def fit(self, X: Any, y: Any) -> WindowRegressor:
        """Start afresh: keep the last ``window`` rows of X/y and fit on them."""
        X, y = IncrementalRegressor._check(X, y)
        self._start(X.shape[1])
        self._append(X, y)
        return self

    def partial_fit(self, X: Any, y: Any) -> WindowRegressor:
        """Append a batch to the window; refit when ``refit_every`` rows arrived since the last refit."""
        X, y = IncrementalRegressor._check(X, y)
        if not hasattr(self, "X_window_"):
            self._start(X.shape[1])
        else:
            _check_width(X, self.n_features_in_, "partial_fit")
        self._append(X, y)
        return self

    def _refit(self, X: np.ndarray, y: np.ndarray) -> None:
        self.regressor_ = HistGradientBoostingRegressor(**self._boosting_params()).fit(X, y)

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "regressor_")
        X = _predict_features(self, X)
        with _openmp_threads(self.n_threads):
            out: np.ndarray = self.regressor_.predict(X)
        return out


class WindowClassifier(ClassifierMixin, _SlidingWindow):
    """``HistGradientBoostingClassifier`` refit on a sliding window of the last ``window`` labelled rows,
    every ``refit_every`` rows learned. The classes are declared up front as for
    ``IncrementalClassifier``; ``predict_proba`` has one column per declared class (a class absent from
    the window gets probability 0; a window holding one class predicts it with probability 1).

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 2)); labels = np.where(X[:, 0] > X[:, 1], "up", "down")
    >>> clf = WindowClassifier(window=300, refit_every=100, random_state=0)
    >>> _ = clf.partial_fit(X[:5], np.array(["up"] * 5), classes=["up", "down"])  # one class so far
    >>> clf.classes_.tolist(), clf.predict_proba(X[:1]).tolist()
    (['down', 'up'], [[0.0, 1.0]])
    >>> for start in range(5, 500, 50):
    ...     _ = clf.partial_fit(X[start:start + 50], labels[start:start + 50])
    >>> float((clf.predict(X[500:]) == labels[500:]).mean()) > 0.9
    True
    """

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "declared_classes_")
        classes: np.ndarray = self.declared_classes_
        return classes

    def fit(self, X: Any, y: Any, classes: Sequence[Any] | None = None) -> WindowClassifier:
        """Start afresh with ``classes`` (default: those in ``y``): keep the last ``window`` rows, fit."""
        X, y = IncrementalClassifier._check(X, y)
        declared = IncrementalClassifier._declared(classes) if classes is not None else np.unique(y)
        self._declare(declared, X.shape[1])
        _check_labels(y, self.declared_classes_)
        self._append(X, y)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Sequence[Any] | None = None) -> WindowClassifier:
        """Append a batch to the window; refit when ``refit_every`` rows arrived since the last refit.
        The first call needs ``classes=``; later calls may repeat them."""
        X, y = IncrementalClassifier._check(X, y)
        if not hasattr(self, "declared_classes_"):
            if classes is None:
                raise ValueError(
                    "the first partial_fit of a WindowClassifier needs classes=[...]: every label "
                    "the model may ever see, declared up front"
                )
            self._declare(IncrementalClassifier._declared(classes), X.shape[1])
        else:
            _check_width(X, self.n_features_in_, "partial_fit")
            if classes is not None and not np.array_equal(
                IncrementalClassifier._declared(classes), self.declared_classes_
            ):
                raise ValueError(
                    f"classes={list(classes)} differ from the classes declared when learning started "
                    f"({self.declared_classes_.tolist()}); a model's classes cannot change"
                )
        _check_labels(y, self.declared_classes_)
        self._append(X, y)
        return self

    def _declare(self, classes: np.ndarray, n_features: int) -> None:
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {classes.tolist()}")
        self._start(n_features)
        self.declared_classes_ = classes

    def _refit(self, X: np.ndarray, y: np.ndarray) -> None:
        present = np.unique(y)
        self.columns_ = np.searchsorted(self.declared_classes_, present)
        if len(present) < 2:  # nothing to separate: the one class seen, with certainty
            self.classifier_: HistGradientBoostingClassifier | None = None
            return
        self.classifier_ = HistGradientBoostingClassifier(**self._boosting_params()).fit(X, y)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [N, C], one column per declared class, in ``classes_`` order."""
        check_is_fitted(self, "columns_")
        X = _predict_features(self, X)
        proba = np.zeros((len(X), len(self.declared_classes_)))
        if self.classifier_ is None:
            proba[:, self.columns_] = 1.0
        else:
            with _openmp_threads(self.n_threads):
                proba[:, self.columns_] = self.classifier_.predict_proba(X)
        return proba

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (ties: the first in ``classes_``)."""
        labels: np.ndarray = self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return labels
