"""The runtimes inside MLServer's own REST app, registry and model repository, in-process (httpx's ASGI
transport, no socket): status codes and bodies of errors as a client sees them, metadata, and a repository
reload under concurrent calls. Real `mlserver start` processes are tested by the serving integration tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import prometheus_client
import pytest
from driftloop_servers.detectors import fit_outlier_detector, save_detector
from mlserver.handlers import DataPlane, ModelRepositoryHandlers
from mlserver.registry import MultiModelRegistry
from mlserver.repository import SchemalessModelRepository
from mlserver.rest.app import create_app
from mlserver.settings import Settings

from tests.servers.conftest import forecaster
from tests.servers.helpers import FEATURES, reference_data


def write_model(root: Path, name: str, implementation: str, uri: str, extra: dict[str, object]) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "implementation": implementation, "parameters": {"uri": uri, "extra": extra}}
    (folder / "model-settings.json").write_text(json.dumps(doc))


@pytest.fixture()
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    root = tmp_path / "repository"
    root.mkdir()
    (root / "bearing-temp").mkdir()
    joblib.dump(forecaster(1), root / "bearing-temp" / "model.joblib")
    write_model(
        root,
        "bearing-temp",
        "driftloop_servers.model_runtime.IncrementalModelRuntime",
        "./model.joblib",
        {"feature_names": FEATURES, "horizon_s": 1800},
    )
    save_detector(fit_outlier_detector("sklearn-iforest", reference_data(300)), root / "bearing-outlier")
    write_model(
        root, "bearing-outlier", "driftloop_servers.outlier_runtime.OutlierRuntime", "./detector.joblib", {}
    )
    settings = Settings(debug=False, parallel_workers=0, metrics_endpoint=None)
    registry = MultiModelRegistry()
    repository = SchemalessModelRepository(str(root))
    for model_settings in await repository.list():
        await registry.load(model_settings)
    data_plane = DataPlane(settings, registry)
    app = create_app(settings, data_plane, ModelRepositoryHandlers(repository, registry))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://mlserver") as c:
            yield c
    finally:
        await registry.unload("bearing-temp")
        await registry.unload("bearing-outlier")
        # a DataPlane registers its request counters in Prometheus' process-wide registry, once per process
        for name in ("_ModelInferRequestSuccess", "_ModelInferRequestFailure", "_ModelInferRequestDuration"):
            prometheus_client.REGISTRY.unregister(getattr(data_plane, name))


def body(rows: list[list[float]] | np.ndarray) -> dict[str, object]:
    x = np.asarray(rows, dtype=float)
    return {
        "inputs": [
            {"name": "features", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}
        ]
    }


async def test_chain_over_http_and_errors_as_json_4xx(client: httpx.AsyncClient) -> None:
    rows = reference_data(3, seed=4)
    first = await client.post("/v2/models/bearing-outlier/infer", json={**body(rows), "id": "req-1"})
    assert first.status_code == 200
    chained = first.json()
    chained["inputs"] = chained.pop("outputs")
    second = await client.post("/v2/models/bearing-temp/infer", json=chained)
    assert second.status_code == 200
    answer = second.json()
    assert answer["id"] == "req-1"
    assert [o["name"] for o in answer["outputs"]] == ["prediction", "outlier_flag", "outlier_score"]
    assert answer["parameters"]["horizon_s"] == 1800.0

    bad = await client.post("/v2/models/bearing-temp/infer", json=body([[1.0, 2.0]]))
    assert bad.status_code == 400
    assert bad.json() == {
        "error": "input tensor 'features' has shape [1, 2]; expected [N, 3] (3 features in the order of "
        "feature_names)"
    }
    nan = await client.post(
        "/v2/models/bearing-outlier/infer",
        json={
            "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 3], "data": [1.0, None, 3.0]}]
        },
    )
    assert nan.status_code == 400
    assert "'features' holds 1 NaN/inf/null value(s)" in nan.json()["error"]

    metadata = (await client.get("/v2/models/bearing-temp")).json()
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP64", "shape": [-1, 3]}]


async def test_repository_reload_under_concurrent_calls_fails_nothing(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    rows = reference_data(2, seed=5)
    old, new = forecaster(1).predict(rows), forecaster(2, scale=2.0).predict(rows)
    seen: list[list[float]] = []
    failures: list[int] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            response = await client.post("/v2/models/bearing-temp/infer", json=body(rows))
            if response.status_code != 200:
                failures.append(response.status_code)
            else:
                seen.append(response.json()["outputs"][0]["data"])
            await asyncio.sleep(0)  # the in-memory transport never waits on a socket: let the others run

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    await asyncio.sleep(0.3)
    joblib.dump(forecaster(2, scale=2.0), tmp_path / "repository" / "bearing-temp" / "model.joblib")
    for _ in range(3):
        assert (await client.post("/v2/repository/models/bearing-temp/load")).status_code == 200
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*callers)

    assert failures == []
    assert len(seen) > 20
    np.testing.assert_allclose(seen[0], old)
    np.testing.assert_allclose(seen[-1], new)
    assert all(np.allclose(s, old) or np.allclose(s, new) for s in seen)
