"""The ingress counts the outlier node's verdicts per predictor: the shipped canary manifest (the
alibi-detect outlier TRANSFORMER in front of the model) on real MLServer processes, models from a real
sqlite MLflow. Rows scored and rows flagged on ``/metrics`` equal what the responses carry."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from driftloop_feedback.rollout.ops import parse_ingress_metrics
from driftloop_graphs.executor import outlier_verdict
from prometheus_client.parser import text_string_to_metric_families

from driftloop.learning.v2_payload import features_request
from tests.fixtures.mlserver import TrainedState
from tests.graphs.runtime_thread import RuntimeThread
from tests.rollout.test_local_runtime_rollout import pump_canary  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration


def _rows(metrics_url: str) -> dict[tuple[str, str], float]:
    """(sample name without _total, predictor) -> value, for the pump deployment's outlier counters."""
    text = httpx.get(metrics_url, timeout=30).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("driftloop_ingress_scored_rows_total", "driftloop_ingress_outlier_rows_total"):
                assert sample.labels["deployment"] == "pump-bearing-temp"
                found[(sample.name.removesuffix("_total"), sample.labels["predictor"])] = sample.value
    return found


def test_rows_the_outlier_node_flagged_are_counted_per_predictor(
    pump_canary: RuntimeThread,  # noqa: F811
    trained_state: TrainedState,
) -> None:
    rt = pump_canary.runtime
    base = rt.url(rt.deployments[0])
    metrics_url = base.split("/seldon/")[0] + "/metrics"
    assert _rows(metrics_url) == {}  # nothing scored yet: no series

    X = np.asarray(trained_state.validation.X[:6], dtype=float)
    far = X[:2] * 50.0 + 1e4  # far outside anything the detector was fitted on
    scored, flagged = 0, 0
    with httpx.Client(timeout=60) as client:
        for batch in (X, np.vstack([X[:3], far])):
            r = client.post(base + "/v2/models/infer", json=features_request(batch))
            assert r.status_code == 200, r.text
            flags = next(o for o in r.json()["outputs"] if o["name"] == "outlier_flag")
            assert flags["datatype"] == "BOOL" and len(flags["data"]) == len(batch)
            scored += len(batch)
            flagged += sum(flags["data"])
    assert flagged >= 2  # the far rows are outliers (the check below must see flags, not only zeros)

    assert _rows(metrics_url) == {
        ("driftloop_ingress_scored_rows", "main"): scored,  # main 100 / canary 0 in the manifest
        ("driftloop_ingress_outlier_rows", "main"): flagged,
    }
    # ... and the rollout controller's ops gate reads them from the real exposition
    counts = parse_ingress_metrics(httpx.get(metrics_url, timeout=30).text, "pump-bearing-temp")
    assert (counts["main"].scored_rows, counts["main"].outlier_rows) == (scored, flagged)


@pytest.mark.parametrize(
    "message,verdict",
    [
        ({"outputs": [{"name": "outlier_flag", "datatype": "BOOL", "data": [True, False, True]}]}, (3, 2)),
        ({"inputs": [{"name": "outlier_flag", "datatype": "BOOL", "data": [[True], [False]]}]}, (2, 1)),
        ({"outputs": [{"name": "outlier_flag", "datatype": "FP64", "data": [1.0]}]}, None),
        ({"outputs": [{"name": "features", "datatype": "FP64", "data": [1.0]}]}, None),
        ({"outputs": "nope"}, None),
    ],
)
def test_outlier_verdict_reads_the_flag_tensor_only(
    message: dict[str, object], verdict: tuple[int, int] | None
) -> None:
    assert outlier_verdict(message) == verdict
