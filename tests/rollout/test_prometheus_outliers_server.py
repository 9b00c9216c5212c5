"""The outlier-rate gate on a cluster, real processes: two real MLServer processes serve the driftloop
outlier runtime as a SeldonDeployment's ``main`` and ``canary`` outlier nodes (``SELDON_DEPLOYMENT_ID`` /
``PREDICTOR_ID`` set as Seldon's operator sets them), a real Prometheus (built by
.ci/setup.d/prometheus.sh) scrapes their MLServer metrics endpoints every second, and PrometheusOpsSource's
snapshots give ``compare`` the rows each predictor's outlier node scored and flagged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from driftloop_feedback.rollout.ops import compare
from driftloop_feedback.rollout.prometheus_ops import PrometheusOpsSource
from driftloop_feedback.rollout.settings import RolloutSettings

from driftloop.mlserver_process import MLServerProcess
from tests.fixtures.prometheus_server import PrometheusServer
from tests.servers.helpers import reference_data
from tests.servers.test_outlier_runtime_metrics import FAR, NODE, outlier_repository

DEPLOYMENT = "pump-bearing-temp"
NAMESPACE = "plant"
SETTINGS = RolloutSettings(min_requests=20, min_scored_rows=100)


@dataclass
class Cluster:
    nodes: dict[str, MLServerProcess]  # predictor -> its outlier node
    prometheus: PrometheusServer

    def send(self, predictor: str, rows: np.ndarray) -> int:
        """``rows`` to the predictor's outlier node in requests of 50; the rows it flagged."""
        flagged = 0
        for start in range(0, len(rows), 50):
            batch = rows[start : start + 50]
            body = {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP64",
                        "shape": list(batch.shape),
                        "data": batch.ravel().tolist(),
                    }
                ]
            }
            response = httpx.post(
                f"{self.nodes[predictor].url}/v2/models/{NODE}/infer", json=body, timeout=30.0
            )
            assert response.status_code == 200, response.text
            flags = next(o for o in response.json()["outputs"] if o["name"] == "outlier_flag")["data"]
            flagged += sum(flags)
        return flagged

    def scraped(self) -> None:
        """Wait until Prometheus holds each node's current scored-row count."""
        for predictor, node in self.nodes.items():
            text = httpx.get(node.metrics_url, timeout=10.0).text
            values = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("driftloop_outlier_scored_rows_total{")
                and f'predictor_name="{predictor}"' in line
            ]
            assert len(values) == 1, f"no scored-rows series of {predictor!r} on {node.metrics_url}:\n{text}"
            value = values[0]
            self.prometheus.wait_for_value(
                "sum(driftloop_outlier_scored_rows_total"
                f'{{predictor_name="{predictor}", namespace="{NAMESPACE}"}})',
                value,
            )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes: dict[str, MLServerProcess] = {}
    prometheus: PrometheusServer | None = None
    try:
        for predictor in ("main", "canary"):
            root = tmp_path_factory.mktemp(f"outlier-{predictor}")
            nodes[predictor] = MLServerProcess(
                outlier_repository(root),
                env={"SELDON_DEPLOYMENT_ID": DEPLOYMENT, "PREDICTOR_ID": predictor},
                run_dir=root / "run",
                name=f"outlier-{predictor}",
            ).start()
        targets = [f"127.0.0.1:{node.metrics_port}" for node in nodes.values()]
        prometheus = PrometheusServer(targets, target_labels={"namespace": NAMESPACE})
        prometheus.start()
        yield Cluster(nodes, prometheus)
    finally:
        if prometheus is not None:
            prometheus.stop()
        for node in nodes.values():
            node.stop()


@pytest.fixture
def source(cluster: Cluster) -> Iterator[PrometheusOpsSource]:
    source = PrometheusOpsSource(
        cluster.prometheus.url, DEPLOYMENT, extra_selector=f'namespace="{NAMESPACE}"', timeout_s=5.0
    )
    try:
        yield source
    finally:
        source.close()


def test_a_canary_with_a_clearly_higher_outlier_rate_fails_the_check(
    cluster: Cluster, source: PrometheusOpsSource
) -> None:
    cluster.scraped()
    before = source.snapshot()
    main_flagged = cluster.send("main", reference_data(600, seed=11))
    canary_rows = np.vstack([reference_data(140, seed=12), [FAR] * 60])  # 30 % far outside the reference
    canary_flagged = cluster.send("canary", canary_rows)
    cluster.scraped()
    check = compare(before, source.snapshot(), SETTINGS)

    outliers = check.outliers
    assert outliers is not None
    assert (outliers.main_rows, outliers.main_outliers) == (600, main_flagged)
    assert (outliers.canary_rows, outliers.canary_outliers) == (200, canary_flagged)
    assert canary_flagged / 200 > main_flagged / 600 + 0.15  # clearly higher, as sent
    assert outliers.breach
    assert check.breach is not None and check.breach.startswith("canary outlier rate")
    event = check.as_dict()["outlier_test"]  # what the check event carries
    assert isinstance(event, dict) and event["verdict"] == "breach"


def test_a_canary_like_main_is_within_the_margin(cluster: Cluster, source: PrometheusOpsSource) -> None:
    cluster.scraped()
    before = source.snapshot()
    cluster.send("main", reference_data(600, seed=21))
    cluster.send("canary", reference_data(200, seed=22))
    cluster.scraped()
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.outliers is not None
    assert (check.outliers.main_rows, check.outliers.canary_rows) == (600, 200)
    assert check.outliers.decided and not check.outliers.breach
    assert check.breach is None
