"""OutlierRuntime in-process: the transformer returns every input unchanged plus outlier_flag/score, and
its response, chained the way Seldon's executor chains it, feeds the model runtime."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector, save_detector
from driftloop_servers.metrics import rows_counted
from driftloop_servers.model_runtime import IncrementalModelRuntime
from driftloop_servers.outlier_runtime import OutlierRuntime
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest

from driftloop.errors import ConfigurationError
from tests.servers.conftest import OUTLIER_NAME, Registry, forecaster
from tests.servers.helpers import FEATURES, model_folder, output, reference_data, request, tensor

FAR = [200.0, 900.0, 80.0]


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("od") / "detector.joblib"
    save_detector(fit_outlier_detector("sklearn-iforest", reference_data(400, seed=1)), path)
    return path


async def outlier_runtime(
    tmp_path: Path, detector_file: Path, name: str = "bearing-outlier", **extra: Any
) -> OutlierRuntime:
    settings = model_folder(
        tmp_path, name, OutlierRuntime, extra={"detector_uri": str(detector_file), **extra}
    )
    runtime = OutlierRuntime(settings)
    assert await runtime.load()
    return runtime


def graph_request(rows: np.ndarray) -> InferenceRequest:
    n = rows.shape[0]
    return request(
        tensor("features", rows),
        tensor("asset_id", [f"pump-0{i}" for i in range(n)], datatype="BYTES"),
        tensor("event_time", [1.7e9 + 300 * i for i in range(n)]),
        id="req-42",
        parameters={"content_type": "np", "trace": "abc"},
    )


async def test_every_input_is_returned_unchanged_plus_flag_and_score(
    tmp_path: Path, detector_file: Path
) -> None:
    runtime = await outlier_runtime(tmp_path, detector_file)
    rows = np.vstack([reference_data(3, seed=5), FAR])
    req = graph_request(rows)
    response = await runtime.predict(req)
    names = [o.name for o in response.outputs]
    assert names == ["features", "asset_id", "event_time", "outlier_flag", "outlier_score"]
    for sent in req.inputs:
        got = output(response, sent.name)
        assert (got.name, got.datatype, got.shape, got.data.root) == (
            sent.name,
            sent.datatype,
            sent.shape,
            sent.data.root,
        )
    flag, score = output(response, "outlier_flag"), output(response, "outlier_score")
    assert (flag.datatype, flag.shape, score.datatype, score.shape) == ("BOOL", [4], "FP64", [4])
    assert flag.data.root == [False, False, False, True]
    threshold = response.parameters.model_dump()["outlier_threshold"] if response.parameters else None
    assert score.data.root[3] > threshold > max(score.data.root[:3])


async def test_seldon_style_chain_carries_the_outlier_result_to_the_model(
    tmp_path: Path, detector_file: Path
) -> None:
    """Seldon's executor renames the transformer's `outputs` to `inputs` and keeps every other key."""
    outlier = await outlier_runtime(tmp_path, detector_file)
    artifact = tmp_path / "bearing-temp" / "model.joblib"
    artifact.parent.mkdir()
    joblib.dump(forecaster(1), artifact)
    model = IncrementalModelRuntime(
        model_folder(
            tmp_path,
            "bearing-temp",
            IncrementalModelRuntime,
            uri="model.joblib",
            extra={"feature_names": FEATURES},
        )
    )
    await model.load()

    rows = np.vstack([reference_data(2, seed=5), FAR])
    first = (await outlier.predict(graph_request(rows))).model_dump(exclude_none=True)
    first["inputs"] = first.pop("outputs")  # every other key (model_name, parameters, id, ...) is kept
    first["id"] = "req-42"  # the dataplane echoes the request id; the runtime leaves it to MLServer
    second = await model.predict(InferenceRequest.model_validate(first))
    assert output(second, "outlier_flag").data.root == [False, False, True]
    np.testing.assert_allclose(output(second, "prediction").data.root, forecaster(1).predict(rows))


async def test_flag_policy_marks_nonfinite_rows_as_outliers_with_a_null_score(
    tmp_path: Path, detector_file: Path
) -> None:
    runtime = await outlier_runtime(tmp_path, detector_file, name="flagging-outlier", nonfinite_policy="flag")
    data: list[float | None] = reference_data(3, seed=5).ravel().tolist()
    data[5] = None  # how JSON carries NaN (MLServer writes NaN as null too)
    response = await runtime.predict(
        request({"name": "features", "datatype": "FP64", "shape": [3, 3], "data": data})
    )
    assert output(response, "outlier_flag").data.root == [False, True, False]
    scores = output(response, "outlier_score").data.root
    assert scores[1] is None and scores[0] is not None
    assert output(response, "features").data.root[5] is None  # passed through as sent (null)
    assert rows_counted("flagging-outlier", "flagged") == 1


@pytest.mark.parametrize(
    "tensors,message",
    [
        ([tensor("x", [[1.0, 2.0, 3.0]])], r"missing input tensor 'features'; received tensors: 'x'"),
        ([tensor("features", [[1.0, 2.0, 3.0, 4.0]])], r"'features' has shape \[1, 4\]; expected \[N, 3\]"),
        ([tensor("features", [["1", "2", "3"]], datatype="BYTES")], r"'features' has datatype BYTES"),
        ([tensor("features", [[1.0, float("nan"), 3.0]])], r"'features' holds 1 NaN/inf/null value"),
    ],
)
async def test_bad_input_is_a_400_naming_the_tensor(
    tmp_path: Path, detector_file: Path, tensors: list[dict[str, Any]], message: str
) -> None:
    runtime = await outlier_runtime(tmp_path, detector_file)
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(*tensors))
    assert exc.value.status_code == 400
    assert re.search(message, str(exc.value)), str(exc.value)


async def test_spectral_residual_needs_a_long_enough_stretch_of_series(tmp_path: Path) -> None:
    series = (60 + np.sin(np.arange(200) / 8)).reshape(-1, 1)
    path = save_detector(
        fit_outlier_detector("alibi-spectral-residual", series, window_amp=10, window_local=10), tmp_path
    )
    runtime = await outlier_runtime(tmp_path, path, feature_tensor="bearing_temp")
    response = await runtime.predict(request(tensor("bearing_temp", series[:40])))
    assert output(response, "outlier_flag").shape == [40]
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(tensor("bearing_temp", series[:5])))
    assert exc.value.status_code == 422
    assert "'bearing_temp'" in str(exc.value) and "at least 11 consecutive points" in str(exc.value)


async def test_detector_from_the_registry_by_alias(registry: Registry, tmp_path: Path) -> None:
    settings = model_folder(
        tmp_path,
        "bearing-outlier",
        OutlierRuntime,
        extra={"detector_uri": f"models:/{OUTLIER_NAME}@champion", "tracking_uri": registry.tracking_uri},
    )
    runtime = OutlierRuntime(settings)
    await runtime.load()
    assert runtime.detector.kind == "sklearn-iforest"
    response = await runtime.predict(request(tensor("features", [FAR])))
    assert response.model_version == "1"
    assert output(response, "outlier_flag").data.root == [True]


async def test_a_drift_detector_or_feature_mismatch_fails_load(tmp_path: Path, detector_file: Path) -> None:
    drift = save_detector(fit_drift_detector("scipy-ks", reference_data(50)), tmp_path / "drift.joblib")
    settings = model_folder(tmp_path, "a", OutlierRuntime, uri=str(drift), extra={})
    with pytest.raises(ConfigurationError, match="holds a scipy-ks drift detector; expected an outlier"):
        await OutlierRuntime(settings).load()
    settings = model_folder(
        tmp_path, "b", OutlierRuntime, uri=str(detector_file), extra={"feature_names": ["a", "b"]}
    )
    with pytest.raises(ConfigurationError, match="fitted on 3 features but feature_names lists 2"):
        await OutlierRuntime(settings).load()
    settings = model_folder(tmp_path, "c", OutlierRuntime, extra={"detector_url": "x"})
    with pytest.raises(ConfigurationError, match=r"unknown key\(s\) 'detector_url'"):
        await OutlierRuntime(settings).load()
    settings = model_folder(tmp_path, "d", OutlierRuntime, extra={})
    with pytest.raises(ConfigurationError, match=r"set parameters.extra.detector_uri \(or parameters.uri\)"):
        await OutlierRuntime(settings).load()
