"""Online learning through ``POST /v2/models/{model_name}/learn`` on a real MLServer process: a regressor
and a classifier learn labelled rows in place (their predictions move exactly as the same ``partial_fit``
calls move a local copy), every bad call is a 4xx with a message and changes nothing, the route is off by
default (409), other names get a 404, the learned and refused calls are counted on ``/metrics``, a reload
serves the artifact again, and ``online_learning`` with parallel workers fails the load."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from driftloop_servers.estimators import IncrementalClassifier, IncrementalRegressor
from driftloop_servers.model_runtime import IncrementalModelRuntime
from prometheus_client.parser import text_string_to_metric_families

from driftloop.mlserver_process import MLServerProcess
from tests.servers.helpers import FEATURES, reference_data

REGRESSOR = "learner-temp"
CLASSIFIER = "learner-state"
FROZEN = "frozen-temp"  # online_learning left at its default
SWAPPED = "swapped-temp"  # reloaded by one test
IMPLEMENTATION = f"{IncrementalModelRuntime.__module__}.{IncrementalModelRuntime.__name__}"


def regressor() -> IncrementalRegressor:
    x = reference_data(300, seed=4)
    return IncrementalRegressor(random_state=0).fit(x, 0.4 * x[:, 0] + 0.01 * x[:, 1] + 0.8 * x[:, 2])


def classifier() -> IncrementalClassifier:
    x = reference_data(300, seed=4)
    return IncrementalClassifier(random_state=0).fit(x, np.digitize((x[:, 0] - 70.0) / 8.0, [-0.5, 0.5]))


def write_model(root: Path, name: str, estimator: Any, **extra: Any) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    joblib.dump(estimator, folder / "model.joblib")
    doc = {
        "name": name,
        "implementation": IMPLEMENTATION,
        "parameters": {
            "uri": "./model.joblib",
            "version": "7",
            "extra": {"feature_names": FEATURES, **extra},
        },
    }
    (folder / "model-settings.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLServerProcess]:
    root = tmp_path_factory.mktemp("online-learning")
    repository = root / "repo"
    write_model(repository, REGRESSOR, regressor(), online_learning=True)
    write_model(repository, CLASSIFIER, classifier(), online_learning=True)
    write_model(repository, FROZEN, regressor())
    write_model(repository, SWAPPED, regressor(), online_learning=True)
    process = MLServerProcess(
        repository, env={"DRIFTLOOP_HOME": str(root / "home")}, run_dir=root / "run", name="online-learning"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def fp64(name: str, values: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": "FP64", "shape": list(values.shape), "data": values.ravel().tolist()}


def learn_body(rows: np.ndarray, truth: np.ndarray, *, datatype: str = "FP64") -> dict[str, Any]:
    return {
        "inputs": [
            fp64("features", rows),
            {
                "name": "truth",
                "datatype": datatype,
                "shape": list(truth.shape),
                "data": truth.ravel().tolist(),
            },
        ]
    }


def learn(server: MLServerProcess, model: str, body: Any) -> httpx.Response:
    """POST the body as is (bytes) or as JSON; NaN/inf go out as JSON's common NaN/Infinity tokens."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}/v2/models/{model}/learn",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30.0,
    )


def infer(server: MLServerProcess, model: str, rows: np.ndarray) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/v2/models/{model}/infer", json={"inputs": [fp64("features", rows)]}, timeout=30.0
    )
    assert response.status_code == 200, response.text
    return {o["name"]: o["data"] for o in response.json()["outputs"]}


def online_counts(server: MLServerProcess) -> dict[tuple[str, ...], float]:
    """``{(model,): learned rows, (model, reason): refused calls}`` from the server's ``/metrics``."""
    text = httpx.get(server.metrics_url, timeout=10.0).text
    counts: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftloop_online_learned_rows_total":
                counts[(sample.labels["model"],)] = sample.value
            elif sample.name == "driftloop_online_learn_refused_total":
                counts[(sample.labels["model"], sample.labels["reason"])] = sample.value
    return counts


def test_a_regressor_learns_rows_in_place_exactly_as_partial_fit(server: MLServerProcess) -> None:
    rows = reference_data(3, seed=11)
    local = regressor()
    before = np.asarray(infer(server, REGRESSOR, rows)["prediction"])
    np.testing.assert_allclose(before, local.predict(rows))
    truth = before + 20.0  # far above what the model says now
    batch, target = np.repeat(rows, 10, axis=0), np.repeat(truth, 10)

    answers = []
    for part in (slice(0, 12), slice(12, 30)):
        response = learn(server, REGRESSOR, learn_body(batch[part], target[part]))
        assert response.status_code == 200, response.text
        answers.append(response.json())
        local.partial_fit(batch[part], target[part])
    assert answers == [
        {"model_name": REGRESSOR, "model_version": "7", "learned": 12, "samples_seen": 12},
        {"model_name": REGRESSOR, "model_version": "7", "learned": 18, "samples_seen": 30},
    ]
    after = np.asarray(infer(server, REGRESSOR, rows)["prediction"])
    np.testing.assert_allclose(after, local.predict(rows))  # exactly the same partial_fit calls
    assert (np.abs(after - truth) < np.abs(before - truth) - 1.0).all()  # moved toward the truth


def test_a_classifier_learns_class_values_sent_as_numbers(server: MLServerProcess) -> None:
    row = reference_data(1, seed=11)
    local = classifier()
    first = infer(server, CLASSIFIER, row)
    served_class = first["prediction"][0]
    assert served_class == int(local.predict(row)[0])
    other = (served_class + 1) % 3
    batch = np.repeat(row, 30, axis=0)
    truth = np.full((30, 1), other, dtype=np.int64)  # INT64 [N, 1]

    response = learn(server, CLASSIFIER, learn_body(batch, truth, datatype="INT64"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "model_name": CLASSIFIER,
        "model_version": "7",
        "learned": 30,
        "samples_seen": 30,
    }
    local.partial_fit(batch, truth.ravel())
    after = infer(server, CLASSIFIER, row)
    assert after["prediction"] == [other]
    np.testing.assert_allclose(after["probabilities"], local.predict_proba(row).ravel())
    assert after["probabilities"][other] > first["probabilities"][other]

    # FP64 class values name the same classes
    response = learn(server, CLASSIFIER, learn_body(row, np.array([float(other)])))
    assert response.status_code == 200, response.text
    assert response.json()["samples_seen"] == 31


ROWS = reference_data(2, seed=3)
NAN_ROWS = np.array([ROWS[0], [70.0, np.nan, 20.0]])

REFUSALS = [
    pytest.param(
        REGRESSOR, {"inputs": [fp64("features", ROWS)]}, 400, "truth_missing",
        r"missing input tensor 'truth' \(FP64 or INT64 \[N\], the label of each row\); received tensors: "
        r"'features'",
        id="truth-missing",
    ),
    pytest.param(
        REGRESSOR, learn_body(ROWS, np.array([1.0, 2.0, 3.0])), 400, "truth_rows",
        r"'truth' has 3 rows but the feature tensor has 2; send one truth per feature row",
        id="truth-rows",
    ),
    pytest.param(
        REGRESSOR, learn_body(ROWS, np.array([[1.0, 2.0], [3.0, 4.0]])), 400, "truth_invalid",
        r"'truth' has shape \[2, 2\]; expected \[N\] or \[N, 1\]",
        id="truth-shape",
    ),
    pytest.param(
        REGRESSOR, learn_body(ROWS, np.array(["a", "b"]), datatype="BYTES"), 400, "truth_invalid",
        r"'truth' has datatype BYTES; expected FP64 or INT64 numbers",
        id="truth-bytes",
    ),
    pytest.param(
        REGRESSOR,
        {"inputs": [fp64("features", ROWS), {"name": "truth", "datatype": "FP64", "shape": [2],
                                              "data": [1.0, None]}]},
        400, "truth_nonfinite",
        r"'truth' holds 1 NaN/inf/null value\(s\), first at row 1; every truth must be a finite number",
        id="truth-null",
    ),
    pytest.param(
        REGRESSOR, learn_body(ROWS, np.array([np.inf, 1.0])), 400, "truth_nonfinite",
        r"'truth' holds 1 NaN/inf/null value\(s\), first at row 0",
        id="truth-inf",
    ),
    pytest.param(
        REGRESSOR, learn_body(NAN_ROWS, np.array([1.0, 2.0])), 400, "features_nonfinite",
        r"'features' holds 1 NaN/inf/null value\(s\), first at row 1 \(speed_rpm\); online learning takes "
        r"finite rows only",
        id="features-nan",
    ),
    pytest.param(
        REGRESSOR, learn_body(ROWS[:, :2], np.array([1.0, 2.0])), 400, "features",
        r"'features' has shape \[2, 2\]; expected \[N, 3\]",
        id="features-width",
    ),
    pytest.param(
        REGRESSOR, {"inputs": [{"name": "truth", "datatype": "FP64", "shape": [1], "data": [1.0]}]}, 400,
        "features", r"missing input tensor 'features'; received tensors: 'truth'",
        id="features-missing",
    ),
    pytest.param(
        CLASSIFIER, learn_body(ROWS, np.array([3.0, 0.5])), 422, "unknown_class",
        r"truth value\(s\) \[0.5, 3.0\] are not classes of the model \(its classes: \[0, 1, 2\]\); online "
        r"learning cannot add a class",
        id="unknown-class",
    ),
    pytest.param(REGRESSOR, b'{"inputs": [', 400, "body", r"the body is not valid JSON", id="not-json"),
    pytest.param(REGRESSOR, b"[1, 2]", 422, "body", r"the body is a JSON list", id="json-list"),
    pytest.param(
        REGRESSOR, {"outputs": []}, 422, "body", r"not a V2 inference request \(inputs: Field required\)",
        id="not-v2",
    ),
]  # fmt: skip


@pytest.mark.parametrize("model,body,status,reason,message", REFUSALS)
def test_bad_learn_calls_are_4xx_with_a_message_counted_and_change_nothing(
    server: MLServerProcess, model: str, body: Any, status: int, reason: str, message: str
) -> None:
    probe = reference_data(2, seed=21)
    before, counted = infer(server, model, probe), online_counts(server)
    response = learn(server, model, body)
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["error"]), response.json()
    assert infer(server, model, probe) == before
    after = online_counts(server)
    assert after.get((model, reason), 0.0) == counted.get((model, reason), 0.0) + 1
    assert after[(model,)] == counted[(model,)]  # no row learned


def test_learning_is_off_by_default_and_says_how_to_turn_it_on(server: MLServerProcess) -> None:
    rows = reference_data(2, seed=5)
    before = infer(server, FROZEN, rows)
    response = learn(server, FROZEN, learn_body(rows, np.array([1.0, 2.0])))
    assert response.status_code == 409
    assert response.json()["error"].startswith(
        "online learning is off for model 'frozen-temp'; to turn it on, set \"online_learning\": true in "
        "parameters.extra of its model-settings.json"
    )
    assert infer(server, FROZEN, rows) == before
    assert online_counts(server)[(FROZEN, "disabled")] >= 1


def test_a_name_without_a_learning_model_is_a_404_naming_the_models_that_have_the_route(
    server: MLServerProcess,
) -> None:
    response = learn(server, "bearing-nope", learn_body(ROWS, np.array([1.0, 2.0])))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error.startswith("no model 'bearing-nope' with a learn route is loaded in this server")
    assert all(name in error for name in (REGRESSOR, CLASSIFIER, FROZEN, SWAPPED))


def test_a_reload_serves_the_registered_artifact_again_and_counts_from_zero(server: MLServerProcess) -> None:
    rows = reference_data(2, seed=8)
    original = infer(server, SWAPPED, rows)["prediction"]
    response = learn(server, SWAPPED, learn_body(np.repeat(rows, 10, axis=0), np.full(20, 500.0)))
    assert response.json()["samples_seen"] == 20
    assert infer(server, SWAPPED, rows)["prediction"] != original

    reload = httpx.post(f"{server.url}/v2/repository/models/{SWAPPED}/load", timeout=60.0)
    assert reload.status_code == 200, reload.text
    assert infer(server, SWAPPED, rows)["prediction"] == original  # the online increments are gone
    response = learn(server, SWAPPED, learn_body(rows, np.array([1.0, 2.0])))
    assert response.status_code == 200, response.text
    assert response.json()["samples_seen"] == 2


def test_with_parallel_workers_online_learning_fails_the_load_and_the_route_says_how_to_turn_it_on(
    tmp_path: Path,
) -> None:
    """One worker: a model without online learning answers the 409 (from its worker); a model with it
    fails its load saying why (each worker would learn its own copy)."""
    repository = tmp_path / "repo"
    write_model(repository, FROZEN, regressor())
    process = MLServerProcess(
        repository,
        env={"DRIFTLOOP_HOME": str(tmp_path / "home")},
        parallel_workers=1,
        run_dir=tmp_path / "run",
        name="online-learning-workers",
    )
    process.start()
    try:
        rows = reference_data(2, seed=5)
        response = learn(process, FROZEN, learn_body(rows, np.array([1.0, 2.0])))
        assert response.status_code == 409, response.text
        assert "online learning is off for model 'frozen-temp'; to turn it on" in response.json()["error"]

        write_model(repository, REGRESSOR, regressor(), online_learning=True)
        load = httpx.post(f"{process.url}/v2/repository/models/{REGRESSOR}/load", timeout=60.0)
        assert load.status_code == 500  # MLServer's answer to any failed load, with the load's error
        assert f"model '{REGRESSOR}': online_learning needs MLSERVER_PARALLEL_WORKERS=0" in load.text
        assert httpx.get(f"{process.url}/v2/models/{REGRESSOR}/ready", timeout=10.0).status_code != 200
        assert infer(process, FROZEN, rows)  # the server keeps serving the other model
    finally:
        process.stop()
