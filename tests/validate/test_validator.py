"""The Validator on fitted scikit-learn models, with an in-memory registry."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from driftloop_feedback.validate import (
    ValidationSettings,
    Validator,
    ValidatorConfigError,
    make_loss,
    paired_differences,
    publish_verdict,
)
from driftloop_feedback.validate.validator import Row
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression


class MemoryRegistry:
    def __init__(self) -> None:
        self.tags: dict[tuple[str, int], dict[str, str]] = {}
        self.metrics: dict[str, list[tuple[str, float, int]]] = {}

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None:
        self.tags.setdefault((name, version), {}).update(tags)

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        self.metrics.setdefault(run_id, []).extend((k, v, step) for k, v in metrics.items())


def regression_rows(n: int, seed: int, slope: float = 2.0) -> list[Row]:
    """y = slope * x0 - x1 + noise: the regime the challenger learned (slope 2), the champion did not."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = slope * X[:, 0] - X[:, 1] + rng.normal(0, 0.5, n)
    return [
        Row(tuple(x), float(t), example_id=f"r{seed}:{i}") for i, (x, t) in enumerate(zip(X, y, strict=True))
    ]


def fitted_regressor(slope: float, seed: int) -> LinearRegression:
    rows = regression_rows(500, seed, slope)
    return LinearRegression().fit([r.features for r in rows], [r.truth for r in rows])


def test_a_challenger_fitted_to_the_new_regime_passes_and_the_verdict_is_published() -> None:
    champion, challenger = fitted_regressor(1.0, 1), fitted_regressor(2.0, 2)
    settings = ValidationSettings(loss_bound=5.0, batch_size=16)
    validator = Validator(champion, challenger, settings)
    result = validator.run(regression_rows(5000, 3))
    d = result.decision
    assert d.verdict == "pass" and d.upper < 0.0 and result.loss == "absolute"
    assert result.scored == d.n < 200  # a clear improvement is decided quickly
    assert result.read == result.scored + result.unused and result.unused < 16  # stopped reading
    registry = MemoryRegistry()
    publish_verdict(registry, "pump-bearing-temp", 7, "run-7", result)
    tags = registry.tags[("pump-bearing-temp", 7)]
    assert tags["driftloop.validation.verdict"] == "pass"
    assert float(tags["driftloop.validation.upper"]) == d.upper
    assert float(tags["driftloop.validation.lower"]) == d.lower
    assert tags["driftloop.validation.n"] == str(d.n)
    assert tags["driftloop.validation.alpha"] == "0.05"
    assert tags["driftloop.validation.margin"] == "0.0"
    assert "empirical-bernstein" in tags["driftloop.validation.method"]
    metrics = {k: (v, step) for k, v, step in registry.metrics["run-7"]}
    assert metrics["driftloop.validation.upper"] == (d.upper, d.n)
    assert metrics["driftloop.validation.n"] == (float(d.n), d.n)


def test_the_champion_against_itself_stays_inconclusive_until_the_budget() -> None:
    model = fitted_regressor(2.0, 4)
    settings = ValidationSettings(loss_bound=5.0, max_examples=300)
    result = Validator(model, model, settings).run(regression_rows(1000, 5))
    assert result.decision.verdict == "inconclusive" and result.decision.exhausted
    assert result.scored == 300 and result.decision.mean == 0.0
    assert result.read == 320 and result.unused == 20  # 5 batches of 64: the last one partly unused


def test_a_worse_challenger_fails() -> None:
    champion, challenger = fitted_regressor(2.0, 6), fitted_regressor(-1.0, 7)
    result = Validator(champion, challenger, ValidationSettings(loss_bound=5.0)).run(regression_rows(3000, 8))
    assert result.decision.verdict == "fail" and result.decision.lower > 0.0


def test_on_demand_decisions_while_rows_trickle_in() -> None:
    champion, challenger = fitted_regressor(1.0, 9), fitted_regressor(2.0, 10)
    validator = Validator(champion, challenger, ValidationSettings(loss_bound=5.0, min_examples=40))
    rows = regression_rows(400, 11)
    first = validator.observe(rows[:20])
    assert first.verdict == "inconclusive" and first.n == 20  # below the minimum: wait
    assert validator.result().decision == first
    for i in range(20, 400, 20):
        if validator.observe(rows[i : i + 20]).concluded:
            break
    assert validator.result().decision.verdict == "pass"
    late = validator.observe(rows[:5])  # after the verdict: counted, not scored
    assert late.n == validator.result().scored and validator.result().unused >= 5


def test_rows_the_challenger_trained_on_are_skipped_and_counted() -> None:
    model = fitted_regressor(2.0, 12)
    rows = regression_rows(100, 13)
    trained = {r.example_id for r in rows[:30] if r.example_id}
    validator = Validator(model, model, ValidationSettings(loss_bound=5.0), exclude_ids=trained)
    result = validator.run(rows)
    assert result.skipped == 30 and result.scored == 70 and result.read == 100


def test_clipped_losses_are_counted() -> None:
    champion = DummyRegressor(strategy="constant", constant=0.0).fit([[0.0]], [0.0])
    challenger = DummyRegressor(strategy="constant", constant=100.0).fit([[0.0]], [0.0])
    rows = [Row((0.0,), 0.0)] * 50
    result = Validator(champion, challenger, ValidationSettings(loss_bound=2.0)).run(rows)
    assert result.decision.verdict == "fail" and result.clipped == result.scored == 30
    assert result.decision.mean == 2.0  # the challenger's loss of 100 counted as the bound


def classification_data(n: int, seed: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = np.where((X[:, 0] > 0) ^ flip, "wear", "ok")
    return X, y


@pytest.mark.parametrize("loss", [None, "log"])
def test_a_classifier_challenger_that_learned_the_new_labels_passes(loss: str | None) -> None:
    champion = LogisticRegression().fit(*classification_data(400, 14, flip=False))
    challenger = LogisticRegression().fit(*classification_data(400, 15, flip=True))
    X, y = classification_data(2000, 16, flip=True)
    rows = [Row(tuple(x), t) for x, t in zip(X, y, strict=True)]
    settings = ValidationSettings(loss=loss)  # type: ignore[arg-type]
    result = Validator(champion, challenger, settings).run(rows)
    assert result.loss == (loss or "zero_one")
    assert result.decision.verdict == "pass" and result.decision.n < 100


def test_losses_on_known_values() -> None:
    reg = DummyRegressor(strategy="constant", constant=1.0).fit([[0.0]], [1.0])
    X, truth = np.zeros((3, 1)), np.array([1.0, 3.0, -2.0])
    absolute = make_loss(ValidationSettings(loss_bound=2.5), reg)
    np.testing.assert_array_equal(absolute(reg, X, truth), [0.0, 2.0, 3.0])
    squared = make_loss(ValidationSettings(loss="squared", loss_bound=5.0), reg)
    np.testing.assert_array_equal(squared(reg, X, truth), [0.0, 4.0, 9.0])
    other = DummyRegressor(strategy="constant", constant=3.0).fit([[0.0]], [3.0])
    scored = paired_differences(absolute, reg, other, X, truth)
    np.testing.assert_array_equal(scored.differences, [2.0, -2.0, 2.5 - 2.5])
    np.testing.assert_array_equal(scored.clipped, [False, False, True])
    clf = LogisticRegression().fit([[-1.0], [1.0]], ["a", "b"])
    log = make_loss(ValidationSettings(loss="log", probability_floor=1e-3), clf)
    p = clf.predict_proba([[1.0]])[0, 1]
    np.testing.assert_allclose(
        log(clf, np.array([[1.0], [1.0]]), np.array(["b", "unknown"])), [-np.log(p), 6.9077], rtol=1e-4
    )
    assert log.bound == pytest.approx(-np.log(1e-3))


def test_loss_settings_that_cannot_work_say_what_to_set() -> None:
    reg = DummyRegressor().fit([[0.0]], [0.0])
    with pytest.raises(ValidatorConfigError, match="DRIFTLOOP_VALIDATION_LOSS_BOUND"):
        Validator(reg, reg, ValidationSettings())
    with pytest.raises(ValidatorConfigError, match=r"predict_proba and classes_.*zero_one"):
        Validator(reg, reg, ValidationSettings(loss="log")).run([Row((0.0,), 0.0)])
    with pytest.raises(ValidatorConfigError, match="non-finite prediction"):
        Validator(reg, NanModel(), ValidationSettings(loss_bound=1.0)).run([Row((0.0,), 0.0)])


class NanModel:
    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), np.nan)
