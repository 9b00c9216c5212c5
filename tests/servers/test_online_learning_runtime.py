"""Online learning in-process (``IncrementalModelRuntime.learn_rows`` and ``load``): what the route does with
estimators that cannot learn online, an estimator that refuses rows, DataFrame-fitted estimators, and the
table that dispatches the route across a reload. The HTTP route itself: test_online_learning.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor
from driftloop_servers.metrics import learning_counted
from driftloop_servers.model_runtime import IncrementalModelRuntime
from driftloop_servers.online_learning import LOADED
from driftloop_servers.settings import ModelRuntimeSettings
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mlserver.errors import MLServerError
from sklearn.linear_model import SGDRegressor

from driftloop.errors import ConfigurationError
from tests.servers.conftest import forecaster
from tests.servers.helpers import FEATURES, model_folder, output, reference_data, request, tensor


class RefusingRegressor(IncrementalRegressor):
    """Learns nothing: its partial_fit refuses every batch, as an estimator may refuse values."""

    def partial_fit(self, X: Any, y: Any) -> RefusingRegressor:
        raise ValueError("y must stay below 1e6")


async def runtime_for(tmp_path: Path, name: str, estimator: Any, **extra: Any) -> IncrementalModelRuntime:
    artifact = tmp_path / f"{name}.joblib"
    joblib.dump(estimator, artifact)
    settings = model_folder(
        tmp_path, name, IncrementalModelRuntime, uri=str(artifact), extra={"feature_names": FEATURES, **extra}
    )
    runtime = IncrementalModelRuntime(settings)
    assert await runtime.load()
    return runtime


def body(rows: np.ndarray, truth: list[float]) -> bytes:
    return json.dumps(
        {"inputs": [tensor("features", rows), tensor("truth", np.asarray(truth, dtype=float))]}
    ).encode()


def fitted_regressor() -> IncrementalRegressor:
    x = reference_data(200, seed=2)
    return IncrementalRegressor(random_state=0).fit(x, x[:, 2] * 2.0)


def test_online_learning_is_off_by_default() -> None:
    assert ModelRuntimeSettings.from_extra({"feature_names": FEATURES}).online_learning is False


async def test_an_estimator_without_partial_fit_fails_load_when_online_learning_is_on(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"online_learning needs an estimator with partial_fit.*Pipeline"
    ):
        await runtime_for(tmp_path, "pipeline", forecaster(1), online_learning=True)
    assert await runtime_for(tmp_path, "pipeline-served", forecaster(1))  # serving alone is fine


async def test_a_classifier_with_string_classes_fails_load_when_online_learning_is_on(tmp_path: Path) -> None:
    x = reference_data(100, seed=1)
    labels = np.where(x[:, 0] > 70, "hot", "ok").astype(object)
    with pytest.raises(ConfigurationError, match=r"numeric truth, but the classifier's classes are strings"):
        await runtime_for(
            tmp_path, "strings", IncrementalClassifier(random_state=0).fit(x, labels), online_learning=True
        )


async def test_an_estimator_refusing_the_rows_is_a_422_counted_and_nothing_is_learned(tmp_path: Path) -> None:
    x = reference_data(200, seed=2)
    estimator = RefusingRegressor(random_state=0)
    IncrementalRegressor.fit(estimator, x, x[:, 2])
    runtime = await runtime_for(tmp_path, "refusing", estimator, online_learning=True)
    with pytest.raises(MLServerError) as exc:
        runtime.learn_rows(body(x[:2], [1.0, 2.0]))
    assert exc.value.status_code == 422
    assert str(exc.value) == "the estimator refused to learn these rows: y must stay below 1e6"
    assert learning_counted("refusing", "estimator") == 1
    assert learning_counted("refusing") == 0


async def test_a_dataframe_fitted_estimator_learns_with_its_column_names(tmp_path: Path) -> None:
    """Learning from a bare array would warn (feature names), and warnings fail these tests."""
    frame = pd.DataFrame(reference_data(200, seed=3), columns=FEATURES)
    estimator = SGDRegressor(random_state=0).fit(frame, frame["ambient_c"] * 2.0)
    runtime = await runtime_for(tmp_path, "frame", estimator, online_learning=True)
    rows = reference_data(4, seed=6)
    answer = runtime.learn_rows(body(rows, [100.0] * 4))
    assert answer == {"model_name": "frame", "model_version": None, "learned": 4, "samples_seen": 4}
    local = SGDRegressor(random_state=0).fit(frame, frame["ambient_c"] * 2.0)
    local.partial_fit(pd.DataFrame(rows, columns=FEATURES), np.full(4, 100.0))
    response = await runtime.predict(request(tensor("features", rows)))
    np.testing.assert_allclose(
        output(response, "prediction").data.root, local.predict(pd.DataFrame(rows, columns=FEATURES))
    )


async def test_the_route_table_follows_a_reload_and_forgets_unloaded_models(tmp_path: Path) -> None:
    old = await runtime_for(tmp_path, "swap", fitted_regressor(), online_learning=True)
    assert LOADED.get("swap") is old
    new = IncrementalModelRuntime(old.settings)
    assert await new.load()  # MLServer's reload: load the new runtime, then unload the old one
    assert await old.unload()
    assert LOADED.get("swap") is new
    assert new.learn_rows(body(reference_data(1, seed=1), [50.0]))["samples_seen"] == 1
    assert await new.unload()
    assert LOADED.get("swap") is None


# -- fuzz: whatever the body, a learn call answers 200 or a 4xx ------------------------------------------

NUMBER = st.one_of(
    st.floats(min_value=-1e4, max_value=1e4),  # huge finite values overflow the scaler (warnings are errors)
    st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.integers(min_value=-5, max_value=5),
)
VALUE = st.one_of(NUMBER, st.none(), st.booleans(), st.text(max_size=3))
SHAPE = st.lists(st.integers(min_value=-1, max_value=4), max_size=3)


@st.composite
def v2_tensor(draw: st.DrawFn, names: st.SearchStrategy[str]) -> dict[str, Any]:
    data = draw(st.one_of(st.lists(VALUE, max_size=12), st.lists(st.lists(NUMBER, max_size=3), max_size=4)))
    return {
        "name": draw(names),
        "datatype": draw(st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "UINT8"])),
        "shape": draw(SHAPE),
        "data": data,
    }


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """Features [N, 3] and truth [N] (or [N, 1]) with a few values or sizes off."""
    n = draw(st.integers(min_value=1, max_value=4))
    features = draw(st.lists(st.floats(min_value=-1e4, max_value=1e4), min_size=3 * n, max_size=3 * n))
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        features[draw(st.integers(min_value=0, max_value=3 * n - 1))] = draw(NUMBER)
    labels = st.sampled_from([0, 1, 0.0, 1.0, True])
    truth = draw(st.lists(st.one_of(labels, labels, labels, NUMBER), min_size=n, max_size=n))
    if draw(st.booleans()):
        truth = truth[: draw(st.integers(min_value=0, max_value=n))]
    shape = draw(st.sampled_from([[len(truth)], [len(truth), 1]]))
    datatype = draw(st.sampled_from(["FP64", "INT64", "FP32"]))
    inputs = [
        {"name": "features", "datatype": "FP64", "shape": [n, 3], "data": features},
        {"name": "truth", "datatype": datatype, "shape": shape, "data": truth},
    ]
    return json.dumps({"inputs": inputs}).encode()


BODIES = st.one_of(
    near_valid(),
    near_valid(),
    st.binary(max_size=40),
    st.recursive(
        st.none() | st.booleans() | NUMBER | st.text(max_size=5), lambda c: st.lists(c, max_size=3)
    ).map(lambda doc: json.dumps(doc).encode()),
    st.lists(v2_tensor(st.sampled_from(["features", "truth", "outlier_flag", "other"])), max_size=4).map(
        lambda inputs: json.dumps({"inputs": inputs}).encode()
    ),
)


def loaded(tmp_path: Path, name: str, estimator: Any) -> IncrementalModelRuntime:
    return asyncio.run(runtime_for(tmp_path, name, estimator, online_learning=True))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> list[IncrementalModelRuntime]:
    root = tmp_path_factory.mktemp("fuzz")
    x = reference_data(200, seed=2)
    return [
        loaded(root, "fuzz-regressor", fitted_regressor()),
        loaded(
            root, "fuzz-classifier", IncrementalClassifier(random_state=0).fit(x, (x[:, 0] > 70).astype(int))
        ),
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, which=st.integers(min_value=0, max_value=1))
def test_any_body_is_learned_or_refused_with_a_4xx(
    fuzzed: list[IncrementalModelRuntime], body: bytes, which: int
) -> None:
    runtime = fuzzed[which]
    try:
        answer = runtime.learn_rows(body)
    except MLServerError as exc:
        event(f"refused {getattr(exc, 'reason', exc.status_code)}")
        assert 400 <= exc.status_code < 500, (exc.status_code, str(exc))
        assert str(exc)
    else:
        event("learned")
        assert answer["learned"] >= 1 and answer["model_name"] == runtime.name
