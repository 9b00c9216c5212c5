"""The outlier runtime's per-predictor row counts on a real MLServer process's metrics endpoint: what the
rollout's outlier-rate gate reads from Prometheus on a cluster (docs/runtimes.md, docs/kubernetes.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from driftloop_servers.detectors import fit_outlier_detector, save_detector
from driftloop_servers.outlier_runtime import OutlierRuntime
from prometheus_client.parser import text_string_to_metric_families

from driftloop.mlserver_process import MLServerProcess
from tests.servers.helpers import reference_data

NODE = "bearing-outlier"
DEPLOYMENT = "pump-bearing-temp"
PREDICTOR = "canary"
FAR = [200.0, 900.0, 80.0]  # far outside the reference data: flagged


def outlier_repository(root: Path) -> Path:
    """A model repository with one outlier node (an isolation forest fitted on the reference data)."""
    folder = root / "repo" / NODE
    folder.mkdir(parents=True)
    save_detector(
        fit_outlier_detector("sklearn-iforest", reference_data(400, seed=1)), folder / "detector.joblib"
    )
    settings = {
        "name": NODE,
        "implementation": f"{OutlierRuntime.__module__}.{OutlierRuntime.__name__}",
        "parameters": {"extra": {"detector_uri": str(folder / "detector.joblib")}},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings))
    return folder.parent


@pytest.fixture(scope="module", params=[0, 1], ids=["in-process", "one-worker"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MLServerProcess]:
    """The outlier node as Seldon's operator starts it: SELDON_DEPLOYMENT_ID and PREDICTOR_ID set."""
    root = tmp_path_factory.mktemp("outlier-metrics")
    process = MLServerProcess(
        outlier_repository(root),
        env={"SELDON_DEPLOYMENT_ID": DEPLOYMENT, "PREDICTOR_ID": PREDICTOR},
        parallel_workers=request.param,
        run_dir=root / "run",
        name="outlier-metrics",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def infer(server: MLServerProcess, rows: np.ndarray) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP64", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ]
    }
    return httpx.post(f"{server.url}/v2/models/{NODE}/infer", json=body, timeout=30.0)


def predictor_rows(server: MLServerProcess) -> dict[str, float]:
    """``{family: value}`` of the node's scored/flagged series labelled with this deployment and predictor."""
    text = httpx.get(server.metrics_url, timeout=10.0).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("driftloop_outlier_scored_rows_total", "driftloop_outlier_flagged_rows_total"):
                labels = sample.labels
                if (labels.get("model"), labels.get("deployment_name"), labels.get("predictor_name")) == (
                    NODE,
                    DEPLOYMENT,
                    PREDICTOR,
                ):
                    found[sample.name] = sample.value
    return found


def test_scored_and_flagged_rows_are_counted_per_predictor_on_the_metrics_endpoint(
    server: MLServerProcess,
) -> None:
    before = predictor_rows(server)
    # the series exist from load, at 0, before any request (Prometheus sees them before traffic)
    assert set(before) == {"driftloop_outlier_scored_rows_total", "driftloop_outlier_flagged_rows_total"}

    normal = reference_data(40, seed=7)
    batches = [np.vstack([normal[:17], [FAR] * 3]), np.vstack([normal[17:], [FAR] * 2])]
    flagged = 0
    for rows in batches:
        response = infer(server, rows)
        assert response.status_code == 200, response.text
        flags = next(o for o in response.json()["outputs"] if o["name"] == "outlier_flag")["data"]
        assert flags[-2:] == [True, True]  # the far rows are outliers
        flagged += sum(flags)
    refused = infer(server, np.ones((2, 2)))  # wrong shape: a 400, no row scored
    assert refused.status_code == 400

    after = predictor_rows(server)
    scored = after["driftloop_outlier_scored_rows_total"] - before["driftloop_outlier_scored_rows_total"]
    outliers = after["driftloop_outlier_flagged_rows_total"] - before["driftloop_outlier_flagged_rows_total"]
    assert scored == 45  # 20 + 25 rows; the refused request's rows are not scored
    assert outliers == flagged
    assert 5 <= outliers < 45
