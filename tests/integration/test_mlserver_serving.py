"""The model repository served by a real ``mlserver start`` process on 127.0.0.1, called over V2 REST
with httpx, with a third-party V2 client (tritonclient.http), and as Seldon's executor chains a graph."""

from __future__ import annotations

import ipaddress

import httpx
import numpy as np
import psutil
import pytest

from driftloop.learning.v2_payload import as_next_node_request, features_request, output_values
from driftloop.mlserver_process import MLServerProcess
from tests.fixtures.mlserver import TrainedState

pytestmark = pytest.mark.integration


def champion_version(trained_state: TrainedState) -> str:
    return str(trained_state.registry.get_alias("pump-bearing-temp", "champion").version)


def current_model(trained_state: TrainedState) -> object:
    return trained_state.registry.load_sklearn_model("models:/pump-bearing-temp@champion")


def test_every_listening_socket_is_on_loopback(mlserver_server: MLServerProcess) -> None:
    assert mlserver_server.pid is not None
    root = psutil.Process(mlserver_server.pid)
    listening = [
        c.laddr
        for proc in [root, *root.children(recursive=True)]
        for c in proc.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    ports = {addr.port for addr in listening}
    assert {mlserver_server.http_port, mlserver_server.grpc_port, mlserver_server.metrics_port} <= ports
    # gRPC listens on a dual-stack socket, reported as the IPv4-mapped ::ffff:127.0.0.1
    assert {_ipv4(addr.ip) for addr in listening} == {"127.0.0.1"}


def _ipv4(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def test_all_three_models_are_ready(mlserver_server: MLServerProcess) -> None:
    with httpx.Client(base_url=mlserver_server.url, timeout=10) as client:
        for name in ("bearing-temp", "bearing-outlier", "bearing-drift"):
            assert client.get(f"/v2/models/{name}/ready").status_code == 200, name
        index = client.post("/v2/repository/index", json={}).json()
    assert {m["name"]: m["state"] for m in index} == {
        "bearing-temp": "READY",
        "bearing-outlier": "READY",
        "bearing-drift": "READY",
    }


def test_httpx_infer_returns_the_registered_models_predictions(
    mlserver_server: MLServerProcess, trained_state: TrainedState
) -> None:
    X = trained_state.rows(16)
    with httpx.Client(base_url=mlserver_server.url, timeout=10) as client:
        response = client.post("/v2/models/bearing-temp/infer", json=features_request(X, request_id="r-1"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r-1"
    assert body["model_version"] == champion_version(trained_state)
    assert body["parameters"]["model_uri"].startswith("models:/pump-bearing-temp")
    assert body["parameters"]["horizon_s"] == 1800.0
    expected = current_model(trained_state).predict(X)  # type: ignore[attr-defined]
    np.testing.assert_allclose(output_values(body)["prediction"], expected, rtol=1e-9)


def test_tritonclient_http_infer(mlserver_server: MLServerProcess, trained_state: TrainedState) -> None:
    import tritonclient.http as triton

    X = trained_state.rows(4, start=100)
    client = triton.InferenceServerClient(url=mlserver_server.url.removeprefix("http://"))
    try:
        assert client.is_server_ready()
        assert client.is_model_ready("bearing-temp")
        features = triton.InferInput("features", list(X.shape), "FP64")
        features.set_data_from_numpy(X, binary_data=False)
        result = client.infer(
            "bearing-temp",
            inputs=[features],
            outputs=[triton.InferRequestedOutput("prediction", binary_data=False)],
        )
        metadata = client.get_model_metadata("bearing-temp")
    finally:
        client.close()
    prediction = result.as_numpy("prediction")
    assert prediction is not None and prediction.shape == (4,)
    np.testing.assert_allclose(prediction, current_model(trained_state).predict(X), rtol=1e-9)  # type: ignore[attr-defined]
    assert metadata["name"] == "bearing-temp"


def test_outlier_then_model_chained_like_seldons_executor(
    mlserver_server: MLServerProcess, trained_state: TrainedState
) -> None:
    X = trained_state.rows(3, start=10).copy()
    X[2, 4] += 45.0  # a bearing-temperature spike on the third row
    body = features_request(
        X, asset_ids=["pump-01", "pump-02", "pump-03"], event_times=[1.0, 2.0, 3.0], request_id="chain-1"
    )
    with httpx.Client(base_url=mlserver_server.url, timeout=10) as client:
        outlier = client.post("/v2/models/bearing-outlier/infer", json=body)
        assert outlier.status_code == 200, outlier.text
        outlier_out = output_values(outlier.json())
        # the transformer returns its inputs unchanged plus the outlier annotations
        np.testing.assert_allclose(outlier_out["features"], X.ravel())
        assert outlier_out["asset_id"] == ["pump-01", "pump-02", "pump-03"]
        chained = as_next_node_request(outlier.json())
        assert "outputs" not in chained and chained["id"] == "chain-1"
        model = client.post("/v2/models/bearing-temp/infer", json=chained)
    assert model.status_code == 200, model.text
    answer = model.json()
    values = output_values(answer)
    assert answer["model_version"] == champion_version(trained_state)
    assert values["outlier_flag"] == outlier_out["outlier_flag"]
    assert values["outlier_score"] == pytest.approx(outlier_out["outlier_score"])
    assert values["outlier_flag"][2] is True
    assert values["outlier_score"][2] > values["outlier_score"][0]
    np.testing.assert_allclose(values["prediction"], current_model(trained_state).predict(X), rtol=1e-9)  # type: ignore[attr-defined]


def test_drift_model_tells_a_shifted_batch_from_a_reference_like_one(
    mlserver_server: MLServerProcess, trained_state: TrainedState
) -> None:
    reference = trained_state.training.reference
    sample = reference[np.random.default_rng(1).choice(len(reference), size=300, replace=False)]
    hotter = sample.copy()
    hotter[:, 4] += 8.0  # bearings run 8 C hotter than in the reference: a drifted batch
    with httpx.Client(base_url=mlserver_server.url, timeout=30) as client:
        same = output_values(
            client.post("/v2/models/bearing-drift/infer", json=features_request(sample)).json()
        )
        response = client.post("/v2/models/bearing-drift/infer", json=features_request(hotter))
    assert response.status_code == 200, response.text
    drifted = output_values(response.json())
    assert same["is_drift"] == [False]
    assert drifted["is_drift"] == [True]
    p_values = np.asarray(drifted["p_values"])
    assert p_values.shape == (8,)
    assert int(np.argmin(p_values)) == 4  # bearing_temp_c, the feature that moved
    np.testing.assert_allclose(np.delete(p_values, 4), np.delete(same["p_values"], 4))


def test_wrong_feature_count_is_a_400_naming_the_tensor(
    mlserver_server: MLServerProcess, trained_state: TrainedState
) -> None:
    X = trained_state.rows(2)[:, :5]
    with httpx.Client(base_url=mlserver_server.url, timeout=10) as client:
        for model in ("bearing-temp", "bearing-outlier"):
            response = client.post(f"/v2/models/{model}/infer", json=features_request(X))
            assert response.status_code == 400, (model, response.text)
            assert "features" in response.json()["error"]
