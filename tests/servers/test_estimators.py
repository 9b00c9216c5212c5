"""One check suite run against every incremental estimator (river's habit): add an ``EstimatorCase`` to
``CASES`` and a new estimator gets every check. Then the checks only one kind has (classes declared up
front for classifiers)."""

from __future__ import annotations

import doctest
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import driftloop_servers.estimators
import numpy as np
import pytest
from driftloop_servers.estimators import (
    IncrementalClassifier,
    IncrementalRegressor,
    WindowClassifier,
    WindowRegressor,
)
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.metrics import log_loss

N_FEATURES = 4


def regression_stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=[50.0, 1000.0, 0.0, 5.0], scale=[5.0, 100.0, 1.0, 2.0], size=(n, N_FEATURES))
    y = 10 + 0.8 * X[:, 0] + 0.01 * X[:, 1] - 2 * X[:, 2] + rng.normal(0, 0.1, n)
    return X, y


def classification_stream(labels: tuple[Any, ...]) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
    """Three classes split by a linear score of unscaled features (numbers or strings as labels)."""

    def stream(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        X, _ = regression_stream(n, seed)
        score = (X[:, 0] - 50.0) / 5.0 - X[:, 2]
        index = np.digitize(score, [-0.7, 0.7])
        return X, np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[index]

    return stream


def mean_abs_error(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.abs(model.predict(X) - y).mean())


def cross_entropy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(log_loss(y, model.predict_proba(X), labels=model.classes_))


@dataclass(frozen=True)
class EstimatorCase:
    """An estimator, a stream it should learn, and the loss that says whether it learned."""

    id: str
    make: Callable[..., Any]  # random_state -> a fresh estimator
    stream: Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (n, seed) -> X, y
    loss: Callable[[Any, np.ndarray, np.ndarray], float]
    classes: tuple[Any, ...] | None = None  # a classifier's declared classes

    def partial_fit(self, model: Any, X: np.ndarray, y: np.ndarray) -> Any:
        if self.classes is None:
            return model.partial_fit(X, y)
        return model.partial_fit(X, y, classes=list(self.classes))


CASES = [
    EstimatorCase(
        "regressor",
        lambda random_state=0: IncrementalRegressor(random_state=random_state),
        regression_stream,
        mean_abs_error,
    ),
    EstimatorCase(
        "classifier-int",
        lambda random_state=0: IncrementalClassifier(random_state=random_state),
        classification_stream((0, 1, 2)),
        cross_entropy,
        classes=(0, 1, 2),
    ),
    EstimatorCase(
        "classifier-str",
        lambda random_state=0: IncrementalClassifier(random_state=random_state),
        classification_stream(("low", "mid", "high")),
        cross_entropy,
        classes=("low", "mid", "high"),
    ),
    # the window models refit every 400 rows with 30 trees here (default 50, 100) to keep the suite fast
    EstimatorCase(
        "window-regressor",
        lambda random_state=0: WindowRegressor(refit_every=400, max_iter=30, random_state=random_state),
        regression_stream,
        mean_abs_error,
    ),
    EstimatorCase(
        "window-classifier-int",
        lambda random_state=0: WindowClassifier(refit_every=400, max_iter=30, random_state=random_state),
        classification_stream((0, 1, 2)),
        cross_entropy,
        classes=(0, 1, 2),
    ),
    EstimatorCase(
        "window-classifier-str",
        lambda random_state=0: WindowClassifier(refit_every=400, max_iter=30, random_state=random_state),
        classification_stream(("low", "mid", "high")),
        cross_entropy,
        classes=("low", "mid", "high"),
    ),
]
CLASSIFIERS = [IncrementalClassifier, WindowClassifier]
each_classifier = pytest.mark.parametrize("make", CLASSIFIERS, ids=[c.__name__ for c in CLASSIFIERS])
each_estimator = pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])


def predictions(model: Any, X: np.ndarray) -> list[np.ndarray]:
    """Everything a model answers for X (probabilities too, for a classifier)."""
    out = [np.asarray(model.predict(X))]
    if is_classifier(model):
        out.append(model.predict_proba(X))
    return out


@each_estimator
def test_is_a_scikit_learn_estimator_of_its_kind(case: EstimatorCase) -> None:
    model = case.make()
    assert is_classifier(model) == (case.classes is not None)
    assert is_regressor(model) == (case.classes is None)
    assert type(model)(**model.get_params()).get_params() == model.get_params()


@each_estimator
def test_fit_and_partial_fit_answer_the_same_shapes(case: EstimatorCase) -> None:
    X, y = case.stream(300, 0)
    fitted = case.make().fit(X, y)
    streamed = case.make()
    for start in range(0, 300, 100):
        case.partial_fit(streamed, X[start : start + 100], y[start : start + 100])
    for model in (fitted, streamed):
        assert model.n_features_in_ == N_FEATURES
        assert model.predict(X[:7]).shape == (7,)
        if case.classes is not None:
            assert model.predict_proba(X[:7]).shape == (7, len(case.classes))
            np.testing.assert_allclose(model.predict_proba(X[:7]).sum(axis=1), 1.0)
            assert sorted(model.classes_.tolist()) == sorted(case.classes)
            assert set(model.predict(X).tolist()) <= set(case.classes)


@each_estimator
def test_n_samples_seen_counts_every_example_learned(case: EstimatorCase) -> None:
    X, y = case.stream(250, 1)
    model = case.make().fit(X[:100], y[:100])
    assert model.n_samples_seen_ == 100
    case.partial_fit(model, X[100:130], y[100:130])
    case.partial_fit(model, X[130:131], y[130:131])
    assert model.n_samples_seen_ == 131
    model.fit(X, y)  # fit starts afresh
    assert model.n_samples_seen_ == 250
    streamed = case.make()
    for start in range(0, 250, 50):
        case.partial_fit(streamed, X[start : start + 50], y[start : start + 50])
    assert streamed.n_samples_seen_ == 250


@each_estimator
def test_pickle_round_trip_answers_the_same_and_keeps_learning(case: EstimatorCase) -> None:
    X, y = case.stream(300, 2)
    model = case.make().fit(X[:200], y[:200])
    restored = pickle.loads(pickle.dumps(model))
    for a, b in zip(predictions(restored, X), predictions(model, X), strict=True):
        np.testing.assert_array_equal(a, b)
    case.partial_fit(model, X[200:], y[200:])
    case.partial_fit(restored, X[200:], y[200:])
    assert restored.n_samples_seen_ == model.n_samples_seen_ == 300
    for a, b in zip(predictions(restored, X), predictions(model, X), strict=True):
        np.testing.assert_array_equal(a, b)


@each_estimator
def test_clone_has_the_params_and_nothing_learned(case: EstimatorCase) -> None:
    X, y = case.stream(100, 3)
    model = case.make(random_state=5).fit(X, y)
    fresh = clone(model)
    assert fresh.get_params() == model.get_params()
    assert not hasattr(fresh, "n_samples_seen_") and not hasattr(fresh, "n_features_in_")


@each_estimator
def test_same_random_state_learns_the_same_model(case: EstimatorCase) -> None:
    X, y = case.stream(300, 4)
    a, b = case.make(random_state=11), case.make(random_state=11)
    for model in (a, b):
        model.fit(X[:200], y[:200])
        case.partial_fit(model, X[200:], y[200:])
    for pa, pb in zip(predictions(a, X), predictions(b, X), strict=True):
        np.testing.assert_array_equal(pa, pb)


@each_estimator
def test_learning_from_a_stream_lowers_the_loss(case: EstimatorCase) -> None:
    X, y = case.stream(2000, 5)
    X_test, y_test = case.stream(500, 6)
    model = case.make()
    case.partial_fit(model, X[:20], y[:20])
    early = case.loss(model, X_test, y_test)
    for start in range(20, 2000, 20):
        case.partial_fit(model, X[start : start + 20], y[start : start + 20])
    late = case.loss(model, X_test, y_test)
    assert late < 0.7 * early, (early, late)


@each_estimator
def test_refuses_a_wrong_feature_count_naming_both(case: EstimatorCase) -> None:
    X, y = case.stream(100, 7)
    model = case.make().fit(X, y)
    with pytest.raises(ValueError, match=rf"X has 3 features, the model was trained on {N_FEATURES}"):
        case.partial_fit(model, X[:, :3], y)
    with pytest.raises(ValueError, match=rf"shape \[N, {N_FEATURES}\], got \[100, 3\]"):
        model.predict(X[:, :3])
    if case.classes is not None:
        with pytest.raises(ValueError, match=rf"shape \[N, {N_FEATURES}\]"):
            model.predict_proba(X[:, :3])
    assert model.n_samples_seen_ == 100  # a refused batch is not counted


@each_estimator
def test_refuses_nonfinite_features(case: EstimatorCase) -> None:
    X, y = case.stream(100, 8)
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        case.make().fit(X, y)
    with pytest.raises(ValueError, match="must be finite"):
        case.partial_fit(case.make(), X, y)


# -- classifiers only ----------------------------------------------------------------------------------


@each_classifier
def test_first_partial_fit_without_classes_is_refused_saying_what_to_pass(make: type) -> None:
    X, y = classification_stream((0, 1, 2))(50, 0)
    model = make()
    with pytest.raises(ValueError, match=r"first partial_fit .* needs classes=\[\.\.\.\]"):
        model.partial_fit(X, y)
    assert not hasattr(model, "n_samples_seen_")
    model.partial_fit(X, y, classes=[0, 1, 2]).partial_fit(X, y)  # later calls may omit them
    assert model.n_samples_seen_ == 100


@each_classifier
def test_declared_classes_need_not_all_appear_in_the_first_batch(make: type) -> None:
    X, y = classification_stream((0, 1, 2))(300, 1)
    first = y != 2
    model = make(random_state=0).partial_fit(X[first], y[first], classes=[2, 0, 1])
    assert model.classes_.tolist() == [0, 1, 2]
    assert model.predict_proba(X[:3]).shape == (3, 3)
    model.partial_fit(X, y)
    assert model.n_samples_seen_ == int(first.sum()) + 300


@each_classifier
def test_labels_outside_the_declared_classes_or_changed_classes_are_refused(make: type) -> None:
    X, y = classification_stream(("low", "mid", "high"))(60, 2)
    model = make().partial_fit(X, y, classes=["low", "mid", "high"])
    bad = y.copy()
    bad[3] = "boiling"
    with pytest.raises(ValueError, match=r"label\(s\) \['boiling'\] outside the declared classes"):
        model.partial_fit(X, bad)
    with pytest.raises(ValueError, match="differ from the classes declared when learning started"):
        model.partial_fit(X, y, classes=["low", "high"])
    with pytest.raises(ValueError, match="lists a class twice"):
        make().partial_fit(X, y, classes=["low", "low", "mid", "high"])
    with pytest.raises(ValueError, match="at least 2 classes"):
        make().fit(X, np.full(60, "low"))
    assert model.n_samples_seen_ == 60


@each_classifier
def test_fit_may_declare_classes_absent_from_y(make: type) -> None:
    X, y = classification_stream((0, 1, 2))(200, 3)
    keep = y != 1
    model = make(random_state=0).fit(X[keep], y[keep], classes=[0, 1, 2])
    assert model.classes_.tolist() == [0, 1, 2]


def test_a_loss_without_probabilities_is_refused() -> None:
    X, y = classification_stream((0, 1, 2))(50, 4)
    with pytest.raises(ValueError, match=r"loss='hinge' gives no class probabilities; use one of log_loss"):
        IncrementalClassifier(loss="hinge").fit(X, y)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(driftloop_servers.estimators)
    assert result.attempted > 0 and result.failed == 0


# -- window models only ------------------------------------------------------------------------------


def test_window_model_refits_on_schedule_and_serves_the_same_model_between_refits() -> None:
    X, y = regression_stream(700, 9)
    model = WindowRegressor(window=300, refit_every=100, random_state=0).fit(X[:250], y[:250])
    assert (model.refits_, len(model.y_window_)) == (1, 250)
    served = model.predict(X[600:])
    model.partial_fit(X[250:300], y[250:300]).partial_fit(X[300:349], y[300:349])  # 99 rows: no refit
    assert model.refits_ == 1
    np.testing.assert_array_equal(model.predict(X[600:]), served)
    model.partial_fit(X[349:350], y[349:350])  # the 100th row since the refit
    assert model.refits_ == 2 and model.n_samples_seen_ == 350
    np.testing.assert_array_equal(model.y_window_, y[50:350])  # only the last 300 rows are kept
    assert not np.array_equal(model.predict(X[600:]), served)


def test_window_model_feeding_many_rows_at_once_equals_feeding_them_in_refit_batches() -> None:
    X, y = classification_stream((0, 1, 2))(600, 10)
    batched = WindowClassifier(window=250, refit_every=100, random_state=0).fit(X[:200], y[:200])
    whole = pickle.loads(pickle.dumps(batched))
    for start in range(200, 600, 100):
        batched.partial_fit(X[start : start + 100], y[start : start + 100])
    whole.partial_fit(X[200:600], y[200:600])
    np.testing.assert_array_equal(batched.predict_proba(X), whole.predict_proba(X))


def test_window_classifier_with_one_class_in_its_window_predicts_it_and_zero_for_the_rest() -> None:
    X, y = classification_stream(("low", "mid", "high"))(100, 11)
    model = WindowClassifier(window=100, min_samples_leaf=5)
    model.fit(X[:30], np.full(30, "mid"), classes=["low", "mid", "high"])
    proba = model.predict_proba(X)
    assert model.classes_.tolist() == ["high", "low", "mid"]
    np.testing.assert_array_equal(proba, np.tile([0.0, 0.0, 1.0], (100, 1)))
    assert set(model.predict(X).tolist()) == {"mid"}
    model.partial_fit(X[30:], y[30:])  # 70 rows >= refit_every: a real model now
    assert model.predict_proba(X).shape == (100, 3) and len(set(model.predict(X).tolist())) > 1


@pytest.mark.parametrize("params", [{"window": 0}, {"refit_every": 0}])
def test_window_model_refuses_an_empty_schedule(params: dict[str, int]) -> None:
    X, y = regression_stream(50, 12)
    with pytest.raises(ValueError, match="must both be >= 1"):
        WindowRegressor(**params).fit(X, y)
