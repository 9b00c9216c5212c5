"""DriftRuntime in-process: batch and online detectors as a V2 model, typed outputs, bad input as 400."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector, save_detector
from driftloop_servers.drift_runtime import DriftRuntime
from driftloop_servers.metrics import rows_counted
from mlserver.errors import MLServerError

from driftloop.errors import ConfigurationError
from tests.servers.conftest import DRIFT_NAME, Registry
from tests.servers.helpers import FEATURES, model_folder, output, reference_data, request, tensor


async def drift_runtime(tmp_path: Path, kind: str, name: str = "bearing-drift", **extra: Any) -> DriftRuntime:
    opts: dict[str, Any] = {"ert": 50, "window_sizes": (10,), "n_bootstraps": 300} if "online" in kind else {}
    path = save_detector(
        fit_drift_detector(kind, reference_data(400, seed=1), **opts), tmp_path / f"{kind}.joblib"
    )
    settings = model_folder(
        tmp_path, name, DriftRuntime, uri=str(path), extra={"feature_names": FEATURES, **extra}
    )
    runtime = DriftRuntime(settings)
    assert await runtime.load()
    return runtime


def shifted(n: int, seed: int) -> np.ndarray:
    rows = reference_data(n, seed=seed)
    rows[:, 2] += 10.0
    return rows


@pytest.mark.parametrize("kind", ["alibi-ks", "alibi-cvm", "scipy-ks"])
async def test_batch_drift_outputs(tmp_path: Path, kind: str) -> None:
    runtime = await drift_runtime(tmp_path, kind)
    calm = await runtime.predict(request(tensor("features", reference_data(150, seed=2))))
    assert output(calm, "is_drift").data.root == [False]
    response = await runtime.predict(request(tensor("features", shifted(150, seed=3))))
    is_drift, p_values = output(response, "is_drift"), output(response, "p_values")
    distances, threshold = output(response, "distances"), output(response, "threshold")
    assert (is_drift.datatype, is_drift.shape, is_drift.data.root) == ("BOOL", [1], [True])
    assert (p_values.datatype, p_values.shape, distances.shape, threshold.shape) == ("FP64", [3], [3], [1])
    assert p_values.data.root[2] < threshold.data.root[0] < p_values.data.root[0]
    assert response.parameters is not None
    assert response.parameters.model_dump()["threshold_on"] == "p_value"
    assert response.parameters.model_dump()["detector_kind"] == kind


async def test_online_detector_keeps_its_window_across_calls(tmp_path: Path) -> None:
    runtime = await drift_runtime(tmp_path, "alibi-cvm-online")
    first = await runtime.predict(request(tensor("features", reference_data(5, seed=2))))
    assert output(first, "is_drift").data.root == [False]
    assert output(first, "p_values").data.root == [None, None, None]
    results = [await runtime.predict(request(tensor("features", shifted(5, seed=10 + i)))) for i in range(6)]
    assert output(results[-1], "is_drift").data.root == [True]
    assert results[-1].parameters is not None
    assert results[-1].parameters.model_dump()["threshold_on"] == "distance"


async def test_drop_policy_tests_the_finite_rows_and_counts_the_rest(tmp_path: Path) -> None:
    runtime = await drift_runtime(tmp_path, "scipy-ks", name="dropping-drift", nonfinite_policy="drop")
    rows = reference_data(100, seed=2)
    rows[[3, 50], 1] = np.inf
    response = await runtime.predict(request(tensor("features", rows)))
    assert response.parameters is not None
    assert response.parameters.model_dump()["rows_tested"] == 98
    assert response.parameters.model_dump()["rows_dropped"] == 2
    assert rows_counted("dropping-drift", "dropped") == 2
    assert rows_counted("dropping-drift", "served") == 98


@pytest.mark.parametrize(
    "tensors,message",
    [
        ([tensor("batch", [[1.0, 2.0, 3.0]])], r"missing input tensor 'features'; received tensors: 'batch'"),
        ([tensor("features", [[1.0, 2.0]])], r"'features' has shape \[1, 2\]; expected \[N, 3\]"),
        ([tensor("features", [[True, True, False]], datatype="BOOL")], r"'features' has datatype BOOL"),
        ([tensor("features", [[1.0, float("-inf"), 3.0]])], r"'features' holds 1 NaN/inf/null.*speed_rpm"),
    ],
)
async def test_bad_input_is_a_400_naming_the_tensor(
    tmp_path: Path, tensors: list[dict[str, Any]], message: str
) -> None:
    runtime = await drift_runtime(tmp_path, "scipy-ks")
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(*tensors))
    assert exc.value.status_code == 400
    assert re.search(message, str(exc.value)), str(exc.value)


async def test_detector_from_the_registry_by_alias(registry: Registry, tmp_path: Path) -> None:
    settings = model_folder(
        tmp_path,
        "bearing-drift",
        DriftRuntime,
        extra={"detector_uri": f"models:/{DRIFT_NAME}@champion", "tracking_uri": registry.tracking_uri},
    )
    runtime = DriftRuntime(settings)
    await runtime.load()
    response = await runtime.predict(request(tensor("features", shifted(100, seed=4))))
    assert response.model_version == "1"
    assert output(response, "is_drift").data.root == [True]


async def test_an_outlier_detector_fails_load(tmp_path: Path) -> None:
    path = save_detector(fit_outlier_detector("sklearn-iforest", reference_data(100)), tmp_path / "od.joblib")
    settings = model_folder(tmp_path, "x", DriftRuntime, uri=str(path), extra={})
    with pytest.raises(
        ConfigurationError, match="holds a sklearn-iforest outlier detector; expected a drift"
    ):
        await DriftRuntime(settings).load()


async def test_concurrent_calls_reach_the_online_detector_one_batch_at_a_time(tmp_path: Path) -> None:
    runtime = await drift_runtime(tmp_path, "alibi-cvm-online")
    calls = [runtime.predict(request(tensor("features", reference_data(7, seed=20 + i)))) for i in range(5)]
    responses = await asyncio.gather(*calls)
    assert all(r.parameters is not None and r.parameters.model_dump()["rows_tested"] == 7 for r in responses)
    assert runtime.detector.time == 35  # type: ignore[attr-defined]


async def test_requested_outputs_select_drift_outputs(tmp_path: Path) -> None:
    runtime = await drift_runtime(tmp_path, "scipy-ks")
    rows = tensor("features", reference_data(50, seed=2))
    response = await runtime.predict(request(rows, outputs=[{"name": "is_drift"}]))
    assert [o.name for o in response.outputs] == ["is_drift"]
    with pytest.raises(MLServerError, match=r"requested output\(s\) 'drift' not produced"):
        await runtime.predict(request(rows, outputs=[{"name": "drift"}]))
