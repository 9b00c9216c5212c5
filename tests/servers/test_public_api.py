"""The names other parts rely on (docs/CONTRACTS.md), the runnable examples in docstrings, and the
metadata the runtimes publish."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import driftloop_servers.detectors as detectors
import joblib
import pytest
from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector, save_detector
from driftloop_servers.drift_runtime import DriftRuntime
from driftloop_servers.model_runtime import IncrementalModelRuntime
from driftloop_servers.outlier_runtime import OutlierRuntime
from mlserver import MLModel

from tests.servers.conftest import forecaster
from tests.servers.helpers import FEATURES, model_folder, reference_data


def test_pinned_runtime_names_are_mlserver_models() -> None:
    for path in (
        "driftloop_servers.model_runtime.IncrementalModelRuntime",
        "driftloop_servers.outlier_runtime.OutlierRuntime",
        "driftloop_servers.drift_runtime.DriftRuntime",
    ):
        module, name = path.rsplit(".", 1)
        assert issubclass(getattr(importlib.import_module(module), name), MLModel)


def test_detector_package_exports() -> None:
    assert set(detectors.__all__) == {
        "DETECTOR_FILENAME",
        "DRIFT_KINDS",
        "OUTLIER_KINDS",
        "DriftDetector",
        "DriftResult",
        "OutlierDetector",
        "OutlierResult",
        "fit_drift_detector",
        "fit_outlier_detector",
        "load_detector",
        "save_detector",
    }
    assert sorted(detectors.OUTLIER_KINDS) == [
        "alibi-iforest",
        "alibi-mahalanobis",
        "alibi-spectral-residual",
        "sklearn-iforest",
    ]
    assert sorted(detectors.DRIFT_KINDS) == [
        "alibi-cvm",
        "alibi-cvm-online",
        "alibi-ks",
        "scipy-cvm",
        "scipy-ks",
    ]


@pytest.mark.parametrize("module", ["driftloop_servers.settings", "driftloop_servers.detectors.factory"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), verbose=False)
    assert result.attempted > 0
    assert result.failed == 0


async def test_runtimes_publish_their_tensors_as_metadata(tmp_path: Path) -> None:
    joblib.dump(forecaster(1), tmp_path / "model.joblib")
    x_ref = reference_data(100)
    od = save_detector(fit_outlier_detector("sklearn-iforest", x_ref), tmp_path / "od.joblib")
    cd = save_detector(fit_drift_detector("scipy-ks", x_ref), tmp_path / "cd.joblib")
    extra = {"feature_names": FEATURES}
    model = IncrementalModelRuntime(
        model_folder(tmp_path, "m", IncrementalModelRuntime, uri=str(tmp_path / "model.joblib"), extra=extra)
    )
    outlier = OutlierRuntime(model_folder(tmp_path, "o", OutlierRuntime, uri=str(od), extra=extra))
    drift = DriftRuntime(model_folder(tmp_path, "d", DriftRuntime, uri=str(cd), extra=extra))
    for runtime in (model, outlier, drift):
        await runtime.load()

    def shapes(tensors: object) -> dict[str, tuple[str, list[int]]]:
        return {t.name: (t.datatype, t.shape) for t in tensors}  # type: ignore[attr-defined]

    assert shapes((await model.metadata()).inputs) == {"features": ("FP64", [-1, 3])}
    assert shapes((await model.metadata()).outputs) == {"prediction": ("FP64", [-1])}
    assert shapes((await outlier.metadata()).outputs) == {
        "features": ("FP64", [-1, 3]),
        "outlier_flag": ("BOOL", [-1]),
        "outlier_score": ("FP64", [-1]),
    }
    assert shapes((await drift.metadata()).outputs) == {
        "is_drift": ("BOOL", [1]),
        "p_values": ("FP64", [3]),
        "distances": ("FP64", [3]),
        "threshold": ("FP64", [1]),
    }
