"""Training on simulated telemetry: reproducible by seed, better than persistence, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.learning.features import FeatureSpec
from driftloop.learning.training import TrainingError, TrainingSettings, train
from driftloop.telemetry import SimulatorSettings, simulate_fleet

FAST = TrainingSettings(seed=3, outlier_kind="sklearn-iforest", drift_kind="scipy-ks", reference_rows=300)


@pytest.fixture(scope="module")
def telemetry():  # type: ignore[no-untyped-def]
    return simulate_fleet(SimulatorSettings(assets=3, days=10, seed=1)).telemetry


def test_same_seed_same_model_and_references(telemetry) -> None:  # type: ignore[no-untyped-def]
    first = train(telemetry, FeatureSpec(), FAST)
    again = train(telemetry, FeatureSpec(), FAST)
    other = train(telemetry, FeatureSpec(), FAST.model_copy(update={"seed": 4}))
    np.testing.assert_array_equal(first.model.regressor_.coef_, again.model.regressor_.coef_)
    np.testing.assert_array_equal(first.reference, again.reference)
    assert first.outlier_detector.threshold == again.outlier_detector.threshold
    assert first.metrics == again.metrics
    assert not np.array_equal(first.model.regressor_.coef_, other.model.regressor_.coef_)


def test_beats_persistence_on_the_most_recent_data(telemetry) -> None:  # type: ignore[no-untyped-def]
    result = train(telemetry, FeatureSpec(), FAST)
    m = result.metrics
    assert m.mae < m.baseline_mae and m.skill > 0.1
    assert m.n_validation > 0 and m.n_train > 2 * m.n_validation
    assert m.dropped_missing > 0  # dropouts and the last 30 minutes of every pump
    assert result.params()["feature_names"].split(",") == result.feature_names
    assert set(m.as_dict()) >= {"val_mae", "val_rmse", "val_persistence_mae", "val_persistence_rmse"}


def test_outlier_reference_is_trimmed_of_sensor_faults(telemetry) -> None:  # type: ignore[no-untyped-def]
    result = train(
        telemetry, FeatureSpec(), TrainingSettings(seed=3, drift_kind="scipy-ks", reference_rows=500)
    )
    spike = result.reference[:5].copy()
    spike[:, result.feature_names.index("bearing_temp_c")] += 20.0
    assert result.outlier_detector.score(spike).flags.all()
    assert result.outlier_detector.score(result.reference).flags.mean() < 0.05


def test_too_little_history_is_refused(telemetry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TrainingError, match=r"only \d+ labelled rows.*need at least 200"):
        train(telemetry.iloc[:150], FeatureSpec(), FAST)
