"""The detector interface: both backends fit, score, persist and reload behind the same protocols."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from driftloop_servers.detectors import (
    DriftDetector,
    DriftResult,
    OutlierDetector,
    OutlierResult,
    fit_drift_detector,
    fit_outlier_detector,
    load_detector,
    save_detector,
)
from driftloop_servers.errors import DetectorError

from tests.servers.helpers import reference_data

FEATURE_OUTLIER_KINDS = ["alibi-iforest", "alibi-mahalanobis", "sklearn-iforest"]
BATCH_DRIFT_KINDS = ["alibi-ks", "alibi-cvm", "scipy-ks", "scipy-cvm"]


@pytest.fixture(scope="module")
def x_ref() -> np.ndarray:
    return reference_data(400, seed=1)


@pytest.mark.parametrize("kind", FEATURE_OUTLIER_KINDS)
def test_outlier_detectors_flag_far_rows_and_about_the_declared_share_of_reference_rows(
    kind: str, x_ref: np.ndarray
) -> None:
    det = fit_outlier_detector(kind, x_ref, threshold_quantile=0.95)
    assert isinstance(det, OutlierDetector)
    assert det.kind == kind and det.n_features == 3

    ref_result = det.score(x_ref)
    assert isinstance(ref_result, OutlierResult)
    assert 0.02 <= ref_result.flags.mean() <= 0.08  # ~5 % above the 95th percentile

    far = np.array([[70.0, 1450.0, 20.0], [200.0, 900.0, 80.0]])
    result = det.score(far)
    assert result.scores.shape == (2,) and result.flags.dtype == bool
    assert result.flags.tolist() == [False, True]
    assert result.scores[1] > result.threshold > result.scores[0]


def test_frozen_mahalanobis_answers_the_same_for_the_same_rows(x_ref: np.ndarray) -> None:
    det = fit_outlier_detector("alibi-mahalanobis", x_ref)
    rows = x_ref[:5] + 30.0
    first = det.score(rows).scores
    det.score(x_ref + 100.0)  # would shift alibi's online mean/covariance if the state were updated
    np.testing.assert_allclose(det.score(rows).scores, first)


def test_spectral_residual_scores_a_univariate_series_and_finds_a_spike() -> None:
    t = np.arange(300, dtype=np.float64)
    series = (60 + 5 * np.sin(2 * np.pi * t / 48) + np.random.default_rng(0).normal(0, 0.3, 300)).reshape(
        -1, 1
    )
    det = fit_outlier_detector("alibi-spectral-residual", series, threshold_quantile=0.99)
    window = series[:100].copy()
    window[70, 0] += 25.0
    result = det.score(window)
    assert result.flags[70]
    assert int(np.argmax(result.scores)) == 70


def test_spectral_residual_refuses_several_features(x_ref: np.ndarray) -> None:
    with pytest.raises(DetectorError, match="univariate"):
        fit_outlier_detector("alibi-spectral-residual", x_ref)


@pytest.mark.parametrize("kind", BATCH_DRIFT_KINDS)
def test_batch_drift_detectors_see_a_shift_and_not_a_resample(kind: str, x_ref: np.ndarray) -> None:
    det = fit_drift_detector(kind, x_ref, p_val=0.05)
    assert isinstance(det, DriftDetector)
    same = det.predict(reference_data(200, seed=2))
    assert isinstance(same, DriftResult)
    assert not same.is_drift
    assert same.p_values.shape == (3,) and same.distances.shape == (3,)
    assert same.threshold == pytest.approx(0.05 / 3) and same.threshold_on == "p_value"

    shifted = reference_data(200, seed=3)
    shifted[:, 2] += 10.0  # ambient temperature regime change
    result = det.predict(shifted)
    assert result.is_drift
    assert result.p_values[2] < result.threshold <= result.p_values[0]
    assert result.distances[2] > result.distances[0]


def test_alibi_and_scipy_ks_agree(x_ref: np.ndarray) -> None:
    batch = reference_data(150, seed=4) + np.array([0.0, 15.0, 0.0])
    alibi = fit_drift_detector("alibi-ks", x_ref).predict(batch)
    scipy = fit_drift_detector("scipy-ks", x_ref).predict(batch)
    np.testing.assert_allclose(alibi.distances, scipy.distances, rtol=1e-6)
    # alibi uses the asymptotic distribution, scipy the exact one where it can: close, not identical
    np.testing.assert_allclose(alibi.p_values, scipy.p_values, rtol=0.1)
    assert alibi.is_drift == scipy.is_drift


def test_online_cvm_detects_a_shift_after_its_window_fills(x_ref: np.ndarray) -> None:
    det = fit_drift_detector("alibi-cvm-online", x_ref, ert=50, window_sizes=(10,), n_bootstraps=300)
    calm = det.predict(reference_data(5, seed=5))
    assert not calm.is_drift and calm.threshold_on == "distance"
    assert np.isnan(calm.p_values).all()
    shifted = reference_data(40, seed=6) + np.array([0.0, 0.0, 25.0])
    result = det.predict(shifted)
    assert result.is_drift
    assert result.distances[2] > result.threshold


@pytest.mark.parametrize("kind", ["sklearn-iforest", "alibi-iforest", "alibi-mahalanobis"])
def test_saved_outlier_detector_reloads_with_identical_scores(
    kind: str, x_ref: np.ndarray, tmp_path: Path
) -> None:
    det = fit_outlier_detector(kind, x_ref)
    path = save_detector(det, tmp_path)
    assert path == tmp_path / "detector.joblib"
    loaded = load_detector(tmp_path)
    assert isinstance(loaded, OutlierDetector)
    np.testing.assert_array_equal(loaded.score(x_ref[:20]).scores, det.score(x_ref[:20]).scores)
    assert loaded.threshold == det.threshold


def test_unknown_kind_names_the_choices(x_ref: np.ndarray) -> None:
    with pytest.raises(DetectorError, match=r"unknown outlier detector kind 'lof'.*sklearn-iforest"):
        fit_outlier_detector("lof", x_ref)
    with pytest.raises(DetectorError, match=r"unknown drift detector kind 'mmd'.*scipy-ks"):
        fit_drift_detector("mmd", x_ref)


def test_bad_reference_and_options_are_refused(x_ref: np.ndarray) -> None:
    bad = x_ref.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DetectorError, match="NaN/inf"):
        fit_outlier_detector("sklearn-iforest", bad)
    with pytest.raises(DetectorError, match="invalid option"):
        fit_outlier_detector("sklearn-iforest", x_ref, n_trees=5)
    with pytest.raises(DetectorError, match="threshold_quantile"):
        fit_outlier_detector("sklearn-iforest", x_ref, threshold_quantile=99)


def test_load_detector_refuses_foreign_files(tmp_path: Path) -> None:
    import joblib

    joblib.dump({"weights": [1, 2]}, tmp_path / "other.joblib")
    with pytest.raises(DetectorError, match="not a driftloop detector"):
        load_detector(tmp_path / "other.joblib")
    with pytest.raises(DetectorError, match="no detector at"):
        load_detector(tmp_path / "missing")


def test_online_cvm_thresholds_are_reproducible_by_seed(x_ref: np.ndarray) -> None:
    opts = {"ert": 50, "window_sizes": (10,), "n_bootstraps": 300}
    stream = reference_data(30, seed=8) + np.array([0.0, 0.0, 3.0])
    first = fit_drift_detector("alibi-cvm-online", x_ref, seed=3, **opts).predict(stream)
    again = fit_drift_detector("alibi-cvm-online", x_ref, seed=3, **opts).predict(stream)
    assert first.threshold == again.threshold
    np.testing.assert_array_equal(first.distances, again.distances)
