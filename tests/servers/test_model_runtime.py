"""IncrementalModelRuntime in-process: load from a local file and from a real MLflow registry, predict,
carry outlier annotations, and answer bad input with 4xx errors that name the tensor."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from driftloop_servers.estimators import IncrementalClassifier
from driftloop_servers.metrics import rows_counted
from driftloop_servers.model_runtime import IncrementalModelRuntime
from mlserver.errors import MLServerError

from driftloop.errors import ConfigurationError
from tests.servers.conftest import MODEL_NAME, Registry, forecaster
from tests.servers.helpers import FEATURES, model_folder, output, reference_data, request, tensor


async def local_runtime(tmp_path: Path, name: str = "bearing-temp", **extra: Any) -> IncrementalModelRuntime:
    artifact = tmp_path / name / "model.joblib"
    artifact.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(forecaster(1), artifact)
    settings = model_folder(
        tmp_path,
        name,
        IncrementalModelRuntime,
        uri="./model.joblib",
        extra={"feature_names": FEATURES, **extra},
    )
    runtime = IncrementalModelRuntime(settings)
    assert await runtime.load()
    return runtime


async def test_local_artifact_relative_to_the_model_folder_predicts_like_the_estimator(
    tmp_path: Path, rows: np.ndarray
) -> None:
    runtime = await local_runtime(tmp_path, horizon_s=1800)
    response = await runtime.predict(request(tensor("features", rows)))
    prediction = output(response, "prediction")
    assert prediction.datatype == "FP64" and prediction.shape == [4]
    np.testing.assert_allclose(prediction.data.root, forecaster(1).predict(rows))
    assert response.parameters is not None
    assert response.parameters.model_dump()["horizon_s"] == 1800.0
    assert response.parameters.model_dump()["model_uri"] == "./model.joblib"


async def test_registry_alias_is_resolved_to_the_version_served(registry: Registry, tmp_path: Path) -> None:
    responses = {}
    for alias in ("champion", "challenger"):
        settings = model_folder(
            tmp_path,
            f"m-{alias}",
            IncrementalModelRuntime,
            extra={
                "model_uri": f"models:/{MODEL_NAME}@{alias}",
                "tracking_uri": registry.tracking_uri,
                "feature_names": FEATURES,
            },
        )
        runtime = IncrementalModelRuntime(settings)
        await runtime.load()
        rows = np.array([[70.0, 1450.0, 20.0]])
        responses[alias] = response = await runtime.predict(request(tensor("features", rows)))
        version = "1" if alias == "champion" else "2"
        assert response.model_version == version
        assert response.parameters is not None
        assert response.parameters.model_dump()["model_version"] == version
        assert response.parameters.model_dump()["model_uri"] == f"models:/{MODEL_NAME}@{alias}"
        expected = registry.models[version].predict(rows)
        np.testing.assert_allclose(output(response, "prediction").data.root, expected)
    assert responses["champion"].outputs[0].data.root != responses["challenger"].outputs[0].data.root


async def test_registry_version_uri_and_default_tracking_uri_from_driftloop_state(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MLFLOW_TRACKING_URI", registry.tracking_uri)
    settings = model_folder(
        tmp_path,
        "m",
        IncrementalModelRuntime,
        uri=f"models:/{MODEL_NAME}/2",
        extra={"feature_names": FEATURES},
    )
    runtime = IncrementalModelRuntime(settings)
    await runtime.load()
    response = await runtime.predict(request(tensor("features", [[70.0, 1450.0, 20.0]])))
    assert response.model_version == "2"


async def test_unknown_alias_fails_load_with_a_message_that_says_what_to_check(
    registry: Registry, tmp_path: Path
) -> None:
    settings = model_folder(
        tmp_path,
        "m",
        IncrementalModelRuntime,
        extra={
            "model_uri": f"models:/{MODEL_NAME}@gold",
            "tracking_uri": registry.tracking_uri,
            "feature_names": FEATURES,
        },
    )
    with pytest.raises(ConfigurationError, match=r"cannot resolve 'models:/pump-bearing-temp@gold'.*alias"):
        await IncrementalModelRuntime(settings).load()


async def test_outlier_annotations_are_carried_and_extra_tensors_ignored(
    tmp_path: Path, rows: np.ndarray
) -> None:
    runtime = await local_runtime(tmp_path)
    flags = tensor("outlier_flag", [False, True, False, False], datatype="BOOL")
    scores = tensor("outlier_score", [0.1, 0.9, None, 0.2])
    response = await runtime.predict(
        request(
            tensor("asset_id", ["pump-01"] * 4, datatype="BYTES"),
            flags,
            tensor("features", rows),
            scores,
            tensor("event_time", [1.7e9] * 4),
        )
    )
    assert [o.name for o in response.outputs] == ["prediction", "outlier_flag", "outlier_score"]
    assert output(response, "outlier_flag").data.root == [False, True, False, False]
    assert output(response, "outlier_flag").datatype == "BOOL"
    assert output(response, "outlier_score").data.root == [0.1, 0.9, None, 0.2]


def _error(exc: pytest.ExceptionInfo[MLServerError]) -> tuple[int, str]:
    return exc.value.status_code, str(exc.value)


BAD_INPUTS = [
    pytest.param(
        [tensor("inputs", [[1.0, 2.0, 3.0]])],
        r"missing input tensor 'features'.*received.*'inputs'",
        id="name",
    ),
    pytest.param(
        [tensor("features", [[1.0, 2.0]])], r"'features' has shape \[1, 2\]; expected \[N, 3\]", id="width"
    ),
    pytest.param([tensor("features", [[[1.0, 2.0, 3.0]]])], r"'features' has shape \[1, 1, 3\]", id="rank"),
    pytest.param(
        [tensor("features", [1.0, 2.0, 3.0, 4.0], shape=[2, 3])],
        r"declares shape \[2, 3\].*carries 4",
        id="size",
    ),
    pytest.param(
        [tensor("features", [["a", "b", "c"]], datatype="BYTES")],
        r"'features' has datatype BYTES",
        id="bytes",
    ),
    pytest.param([tensor("features", [[True, False, True]], datatype="BOOL")], r"datatype BOOL", id="bool"),
    pytest.param(
        [{"name": "features", "datatype": "FP64", "shape": [1, 3], "data": ["1", "2", "3"]}],
        r"'features' holds non-numeric",
        id="strings-in-fp64",
    ),
    pytest.param(
        [{"name": "features", "datatype": "FP64", "shape": [2, 3], "data": [1, 2, 3, None, 5, 6]}],
        r"'features' holds 1 NaN/inf/null value\(s\), first at row 1 \(load_pct\)",
        id="null",
    ),
    pytest.param([tensor("features", [[1.0, float("inf"), 3.0]])], r"first at row 0 \(speed_rpm\)", id="inf"),
    pytest.param(
        [tensor("features", [[1.0, 2.0, 3.0]]), tensor("outlier_flag", [True, False], datatype="BOOL")],
        r"'outlier_flag' has shape \[2\]; expected 1 rows",
        id="carried-rows",
    ),
]


@pytest.mark.parametrize("tensors,message", BAD_INPUTS)
async def test_bad_input_is_a_400_naming_the_tensor(
    tmp_path: Path, tensors: list[dict[str, Any]], message: str
) -> None:
    runtime = await local_runtime(tmp_path)
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(*tensors))
    status, text = _error(exc)
    assert status == 400
    assert __import__("re").search(message, text), text


async def test_rejected_and_served_rows_are_counted(tmp_path: Path, rows: np.ndarray) -> None:
    runtime = await local_runtime(tmp_path, name="counted-model")
    await runtime.predict(request(tensor("features", rows)))
    bad = rows.copy()
    bad[1, 1] = np.nan
    with pytest.raises(MLServerError):
        await runtime.predict(request(tensor("features", bad)))
    assert rows_counted("counted-model", "served") == 4
    assert rows_counted("counted-model", "rejected") == 4


async def test_impute_policy_fills_declared_values(tmp_path: Path, rows: np.ndarray) -> None:
    fill = [70.0, 1450.0, 20.0]
    runtime = await local_runtime(tmp_path, nonfinite_policy="impute", impute_values=fill)
    bad = rows.copy()
    bad[2, 0] = np.nan
    response = await runtime.predict(request(tensor("features", bad)))
    expected_rows = bad.copy()
    expected_rows[2, 0] = fill[0]
    np.testing.assert_allclose(output(response, "prediction").data.root, forecaster(1).predict(expected_rows))


async def test_passthrough_policy_lets_the_estimator_refuse_nan_with_a_422(
    tmp_path: Path, rows: np.ndarray
) -> None:
    runtime = await local_runtime(tmp_path, nonfinite_policy="passthrough")
    bad = rows.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(tensor("features", bad)))
    assert exc.value.status_code == 422
    assert "estimator refused input tensor 'features'" in str(exc.value)


async def test_one_row_may_be_sent_as_a_flat_vector(tmp_path: Path) -> None:
    runtime = await local_runtime(tmp_path)
    response = await runtime.predict(request(tensor("features", [70.0, 1450.0, 20.0])))
    assert output(response, "prediction").shape == [1]


async def test_a_feature_count_mismatch_with_the_artifact_fails_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="fitted on 3 features but feature_names lists 2"):
        await local_runtime(tmp_path, feature_names=["a", "b"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            {"feature_names": FEATURES, "modeluri": "x"},
            r"unknown key\(s\) 'modeluri'.*known keys are.*model_uri",
        ),
        ({}, r"feature_names: Field required"),
        ({"feature_names": FEATURES, "nonfinite_policy": "zero"}, r"nonfinite_policy: Input should be"),
        ({"feature_names": FEATURES, "nonfinite_policy": "impute"}, r"needs impute_values with 3 values"),
        ({"feature_names": ["a", "a", "b"]}, r"duplicates: \['a'\]"),
        ({"feature_names": FEATURES, "horizon_s": "soon"}, r"horizon_s: Input should be a valid number"),
        (
            {"feature_names": FEATURES, "probabilities_name": "prediction"},
            r"output_name and probabilities_name are both 'prediction'",
        ),
    ],
)
async def test_bad_settings_fail_load_naming_the_key(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    settings = model_folder(tmp_path, "m", IncrementalModelRuntime, uri="model.joblib", extra=extra)
    with pytest.raises(ConfigurationError, match=message):
        await IncrementalModelRuntime(settings).load()


async def test_missing_artifact_fails_load_with_the_path(tmp_path: Path) -> None:
    settings = model_folder(
        tmp_path, "m", IncrementalModelRuntime, uri="nope.joblib", extra={"feature_names": FEATURES}
    )
    with pytest.raises(
        ConfigurationError, match=r"artifact 'nope.joblib' not found \(looked at .*/m/nope.joblib\)"
    ):
        await IncrementalModelRuntime(settings).load()


async def test_environment_supplies_settings_and_extra_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: np.ndarray
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MODEL_OUTPUT_NAME", "forecast_c")
    monkeypatch.setenv("DRIFTLOOP_MODEL_HORIZON_S", "600")
    runtime = await local_runtime(tmp_path, horizon_s=1800)
    response = await runtime.predict(request(tensor("features", rows)))
    assert response.outputs[0].name == "forecast_c"
    assert response.parameters is not None and response.parameters.model_dump()["horizon_s"] == 1800.0
    assert os.environ["DRIFTLOOP_MODEL_HORIZON_S"] == "600"


async def test_reload_swaps_the_model_while_requests_are_in_flight(tmp_path: Path, rows: np.ndarray) -> None:
    """MLServer's reload builds a new runtime and unloads the old: a request holding the old one finishes."""
    old = await local_runtime(tmp_path)
    joblib.dump(forecaster(2, scale=2.0), tmp_path / "bearing-temp" / "model.joblib")
    new = IncrementalModelRuntime(old.settings)

    async def call(runtime: IncrementalModelRuntime) -> list[float]:
        response = await runtime.predict(request(tensor("features", rows)))
        return list(output(response, "prediction").data.root)

    in_flight = [asyncio.create_task(call(old)) for _ in range(8)]
    assert await new.load()
    assert await old.unload()
    results = await asyncio.gather(*in_flight, call(old), call(new))
    np.testing.assert_allclose(results[0], forecaster(1).predict(rows))
    np.testing.assert_allclose(results[-2], forecaster(1).predict(rows))
    np.testing.assert_allclose(results[-1], forecaster(2, scale=2.0).predict(rows))


async def test_requested_outputs_are_honoured_and_unknown_ones_refused(
    tmp_path: Path, rows: np.ndarray
) -> None:
    runtime = await local_runtime(tmp_path)
    flags = tensor("outlier_flag", [False] * 4, datatype="BOOL")
    response = await runtime.predict(
        request(tensor("features", rows), flags, outputs=[{"name": "outlier_flag"}, {"name": "prediction"}])
    )
    assert [o.name for o in response.outputs] == ["outlier_flag", "prediction"]
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(tensor("features", rows), outputs=[{"name": "predict_proba"}]))
    assert exc.value.status_code == 400
    assert "requested output(s) 'predict_proba' not produced; available: 'prediction'" in str(exc.value)


async def test_unrelated_environment_variables_with_the_prefix_do_not_break_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_MODEL_SOMETHING_ELSE", "1")
    monkeypatch.setenv("DRIFTLOOP_MODEL_CARRY_TENSORS", '["quality_flag"]')
    runtime = await local_runtime(tmp_path)
    assert runtime.runtime_settings.carry_tensors == ["quality_flag"]


async def test_platform_uri_wins_over_the_folder_default(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seldon's operator injects MLSERVER_MODEL_URI (the node's modelUri): a canary serves its own URI."""
    monkeypatch.setenv("MLSERVER_MODEL_URI", f"models:/{MODEL_NAME}@challenger")
    settings = model_folder(
        tmp_path,
        "bearing-temp",
        IncrementalModelRuntime,
        extra={
            "model_uri": f"models:/{MODEL_NAME}@champion",
            "tracking_uri": registry.tracking_uri,
            "feature_names": FEATURES,
        },
    )
    assert settings.parameters is not None and settings.parameters.uri == f"models:/{MODEL_NAME}@challenger"
    runtime = IncrementalModelRuntime(settings)
    await runtime.load()
    response = await runtime.predict(request(tensor("features", [[70.0, 1450.0, 20.0]])))
    assert response.model_version == "2"


async def test_local_mlflow_model_directory_and_folder_with_model_joblib(
    tmp_path: Path, rows: np.ndarray
) -> None:
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        forecaster(2, 2.0), str(tmp_path / "mlflow-model"), serialization_format="pickle"
    )
    (tmp_path / "plain").mkdir()
    joblib.dump(forecaster(1), tmp_path / "plain" / "model.joblib")
    for folder, expected in (("mlflow-model", forecaster(2, 2.0)), ("plain", forecaster(1))):
        settings = model_folder(
            tmp_path,
            f"m-{folder}",
            IncrementalModelRuntime,
            extra={"model_uri": f"../{folder}", "feature_names": FEATURES},
        )
        runtime = IncrementalModelRuntime(settings)
        await runtime.load()
        response = await runtime.predict(request(tensor("features", rows)))
        np.testing.assert_allclose(output(response, "prediction").data.root, expected.predict(rows))


async def test_an_estimator_fitted_on_a_dataframe_gets_its_columns(tmp_path: Path, rows: np.ndarray) -> None:
    import pandas as pd

    x = pd.DataFrame(reference_data(200, seed=3), columns=FEATURES)
    estimator = forecaster(1).fit(x, x["ambient_c"] * 2.0)
    joblib.dump(estimator, tmp_path / "frame.joblib")
    settings = model_folder(
        tmp_path,
        "m",
        IncrementalModelRuntime,
        uri=str(tmp_path / "frame.joblib"),
        extra={"feature_names": FEATURES},
    )
    runtime = IncrementalModelRuntime(settings)
    await runtime.load()  # predicting with bare arrays would warn, and warnings fail these tests
    response = await runtime.predict(request(tensor("features", rows)))
    np.testing.assert_allclose(
        output(response, "prediction").data.root, estimator.predict(pd.DataFrame(rows, columns=FEATURES))
    )
    reordered = model_folder(
        tmp_path,
        "m2",
        IncrementalModelRuntime,
        uri=str(tmp_path / "frame.joblib"),
        extra={"feature_names": [FEATURES[1], FEATURES[0], FEATURES[2]]},
    )
    with pytest.raises(
        ConfigurationError, match=r"was fitted on columns .* list the same names in the same order"
    ):
        await IncrementalModelRuntime(reordered).load()


# -- classifiers ---------------------------------------------------------------------------------------


def classifier(labels: tuple[Any, ...]) -> IncrementalClassifier:
    x = reference_data(300, seed=4)
    index = np.digitize((x[:, 0] - 70.0) / 8.0, [-0.5, 0.5])
    y = np.asarray(labels, dtype=object if isinstance(labels[0], str) else None)[index]
    return IncrementalClassifier(random_state=0).fit(x, y)


async def classifier_runtime(tmp_path: Path, estimator: Any, **extra: Any) -> IncrementalModelRuntime:
    joblib.dump(estimator, tmp_path / "classifier.joblib")
    settings = model_folder(
        tmp_path,
        "bearing-state",
        IncrementalModelRuntime,
        uri=str(tmp_path / "classifier.joblib"),
        extra={"feature_names": FEATURES, **extra},
    )
    runtime = IncrementalModelRuntime(settings)
    assert await runtime.load()
    return runtime


@pytest.mark.parametrize(
    "labels,datatype",
    [((0, 1, 2), "INT64"), ((0.0, 1.0, 2.0), "FP64"), (("cool", "warm", "hot"), "BYTES")],
    ids=["int", "float", "str"],
)
async def test_a_classifier_answers_its_labels_probabilities_and_class_list(
    tmp_path: Path, rows: np.ndarray, labels: tuple[Any, ...], datatype: str
) -> None:
    estimator = classifier(labels)
    runtime = await classifier_runtime(tmp_path, estimator)
    response = await runtime.predict(request(tensor("features", rows)))
    assert [o.name for o in response.outputs] == ["prediction", "probabilities"]
    prediction, probabilities = output(response, "prediction"), output(response, "probabilities")
    assert (prediction.datatype, prediction.shape) == (datatype, [4])
    assert prediction.data.root == estimator.predict(rows).tolist()
    assert (probabilities.datatype, probabilities.shape) == ("FP64", [4, 3])
    np.testing.assert_allclose(
        np.asarray(probabilities.data.root).reshape(4, 3), estimator.predict_proba(rows)
    )
    assert response.parameters is not None
    assert response.parameters.model_dump()["classes"] == sorted(labels)
    assert response.model_dump_json()  # JSON-ready: MLServer encodes it as is
    metadata = await runtime.metadata()
    assert {t.name: (t.datatype, t.shape) for t in metadata.outputs or ()} == {
        "prediction": (datatype, [-1]),
        "probabilities": ("FP64", [-1, 3]),
    }


async def test_a_classifier_honours_requested_outputs_and_its_probability_output_name(
    tmp_path: Path, rows: np.ndarray
) -> None:
    runtime = await classifier_runtime(tmp_path, classifier((0, 1, 2)), probabilities_name="p_class")
    response = await runtime.predict(request(tensor("features", rows), outputs=[{"name": "p_class"}]))
    assert [o.name for o in response.outputs] == ["p_class"]
    with pytest.raises(MLServerError) as exc:
        await runtime.predict(request(tensor("features", rows), outputs=[{"name": "probabilities"}]))
    assert exc.value.status_code == 400
    assert "available: 'prediction', 'p_class'" in str(exc.value)


async def test_a_regressor_offers_no_probabilities(tmp_path: Path, rows: np.ndarray) -> None:
    runtime = await local_runtime(tmp_path)
    response = await runtime.predict(request(tensor("features", rows)))
    assert [o.name for o in response.outputs] == ["prediction"]
    assert response.parameters is not None and "classes" not in response.parameters.model_dump()


async def test_a_classifier_without_probabilities_fails_load_saying_why(tmp_path: Path) -> None:
    from sklearn.linear_model import SGDClassifier

    x = reference_data(100, seed=1)
    hinge = SGDClassifier(random_state=0).fit(x, (x[:, 0] > 70).astype(int))
    with pytest.raises(ConfigurationError, match=r"classifier without predict_proba .* probabilistic loss"):
        await classifier_runtime(tmp_path, hinge)


def test_classes_of_mixed_types_are_refused_and_the_examples_run() -> None:
    import doctest

    import driftloop_servers.class_outputs
    from driftloop_servers.class_outputs import ClassLabels

    with pytest.raises(ConfigurationError, match=r"mix types \(int, str\).*one label type"):
        ClassLabels.of(np.asarray([1, "a"], dtype=object))
    with pytest.raises(ConfigurationError, match=r"declares 1 class\(es\) \['a'\]; it needs 2"):
        ClassLabels.of(np.asarray(["a"]))
    assert ClassLabels.of(np.asarray([False, True])).values == [0, 1]
    result = doctest.testmod(driftloop_servers.class_outputs)
    assert result.attempted > 0 and result.failed == 0
