"""The ops gate on a cluster's figures, real processes: a real Prometheus server (built from Go modules by
.ci/setup.d/prometheus.sh) scraping, every second over HTTP, a real exporter of Seldon's executor metric
families (main and canary predictors); PrometheusOpsSource queries its HTTP API and ``compare`` judges the
interval as it does the local ingress's figures."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from driftloop_feedback.rollout.ops import compare
from driftloop_feedback.rollout.prometheus_ops import PrometheusOpsSource
from driftloop_feedback.rollout.settings import RolloutSettings

from tests.fixtures.prometheus_server import ExecutorExporter, PrometheusServer
from tests.rollout.conftest import World

NAMESPACE = "plant"
_names = itertools.count()


@dataclass
class Cluster:
    exporter: ExecutorExporter
    prometheus: PrometheusServer
    sources: list[PrometheusOpsSource] = field(default_factory=list)

    def source(self, deployment: str) -> PrometheusOpsSource:
        """A source of the module's Prometheus (closed with the module's fixture)."""
        source = PrometheusOpsSource(
            self.prometheus.url, deployment, extra_selector=f'namespace="{NAMESPACE}"', timeout_s=5.0
        )
        self.sources.append(source)
        return source

    def scraped(self, deployment: str) -> None:
        """Wait until Prometheus holds the exporter's current request count of ``deployment``."""
        total = sum(
            s.value
            for family in self.exporter.registry.collect()
            for s in family.samples
            if s.name.endswith("_bucket")
            and s.labels["le"] == "+Inf"
            and s.labels["deployment_name"] == deployment
            and "summary" not in s.name
        )
        self.prometheus.wait_for_value(
            "sum(seldon_api_executor_server_requests_seconds_count"
            f'{{deployment_name="{deployment}", namespace="{NAMESPACE}"}})',
            total,
        )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    exporter = ExecutorExporter()
    exporter.start()
    prometheus = PrometheusServer([exporter.target], target_labels={"namespace": NAMESPACE})
    cluster = Cluster(exporter, prometheus)
    try:
        prometheus.start()
        yield cluster
    finally:
        for source in cluster.sources:
            source.close()
        prometheus.stop()
        exporter.stop()


@pytest.fixture
def deployment() -> str:
    """A deployment name of the test's own: the module's tests share one exporter and one Prometheus."""
    return f"pump-{next(_names)}"


SETTINGS = RolloutSettings(min_requests=20)


def test_a_canary_5xx_burst_fails_the_error_rate_check(cluster: Cluster, deployment: str) -> None:
    ex = cluster.exporter
    ex.observe(deployment, "main", 300)
    ex.observe(deployment, "canary", 30)
    cluster.scraped(deployment)
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.observe(deployment, "main", 200)
    ex.observe(deployment, "canary", 40)
    ex.observe(deployment, "canary", 10, code="500")  # the burst: 10 of the interval's 50
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.canary_requests == 50 and check.main_requests == 200
    assert check.canary_error_rate == pytest.approx(0.2) and check.main_error_rate == 0.0
    assert check.breach == ("canary error rate 0.200 over 50 requests is above main's 0.000 + 0.01")
    assert check.outliers is None  # no outlier figures from the executor


def test_equal_traffic_passes(cluster: Cluster, deployment: str) -> None:
    ex = cluster.exporter
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.observe(deployment, "main", 180, latency_s=0.02)
    ex.observe(deployment, "main", 20, latency_s=0.02, code="400")  # bad input: not the model's fault
    ex.observe(deployment, "canary", 60, latency_s=0.02)
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.enough_data and check.breach is None
    assert (check.canary_requests, check.main_requests) == (60, 200)
    assert check.canary_error_rate == 0.0 and check.main_error_rate == 0.0
    assert check.canary_p99_s == check.main_p99_s == 0.025  # Seldon's bucket holding 20 ms


def test_a_slow_canary_fails_the_p99_check(cluster: Cluster, deployment: str) -> None:
    ex = cluster.exporter
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.observe(deployment, "main", 200, latency_s=0.004)
    ex.observe(deployment, "canary", 50, latency_s=0.3)
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.canary_p99_s == 0.5 and check.main_p99_s == 0.005
    assert check.breach is not None and check.breach.startswith("canary p99 latency 0.5 s is above main's")


def test_grpc_server_errors_count_and_client_errors_do_not(cluster: Cluster, deployment: str) -> None:
    ex = cluster.exporter
    infer = "/inference.GRPCInferenceService/ModelInfer"
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.observe(deployment, "main", 100, code="OK", service=infer, method="unary")
    ex.observe(deployment, "canary", 30, code="OK", service=infer, method="unary")
    ex.observe(deployment, "canary", 10, code="InvalidArgument", service=infer, method="unary")
    ex.observe(deployment, "canary", 10, code="Unavailable", service=infer, method="unary")
    ex.observe(deployment, "canary", 500, service="status", method="get")  # readiness calls: not inference
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.canary_requests == 50 and check.canary_error_rate == pytest.approx(0.2)
    assert check.breach is not None and "canary error rate 0.200 over 50 requests" in check.breach


def test_no_traffic_is_no_verdict(cluster: Cluster, deployment: str) -> None:
    ex = cluster.exporter
    ex.observe(deployment, "main", 100)
    ex.observe(deployment, "canary", 5, code="500")
    cluster.scraped(deployment)
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.observe(deployment, "main", 100)  # the canary serves nothing this interval
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert check.canary_requests == 0 and not check.enough_data and check.breach is None
    never_seen = cluster.source("no-such-deployment")
    assert never_seen.snapshot() == {}
    assert compare({}, never_seen.snapshot(), SETTINGS).breach is None


def test_a_canary_pod_restart_does_not_hide_its_5xx(cluster: Cluster, deployment: str) -> None:
    """The canary's counters fall back to 0 (a restarted pod) between two checks: the interval is what
    it served since, and its 5xx fail the check (a plain sum would see fewer requests than before)."""
    ex = cluster.exporter
    ex.observe(deployment, "main", 400)
    ex.observe(deployment, "canary", 200)
    cluster.scraped(deployment)
    source = cluster.source(deployment)
    before = source.snapshot()
    ex.restart()  # every series of the exporter starts again at 0 (the main "pod" too)
    ex.observe(deployment, "main", 100)
    ex.observe(deployment, "canary", 24)
    ex.observe(deployment, "canary", 6, code="502")
    cluster.scraped(deployment)
    check = compare(before, source.snapshot(), SETTINGS)
    assert (check.canary_requests, check.main_requests) == (30, 100)
    assert check.breach is not None and "canary error rate 0.200 over 30 requests" in check.breach


def test_the_controller_rolls_back_on_a_canary_5xx_burst_read_from_prometheus(
    world: World, cluster: Cluster
) -> None:
    """The controller's own check, its figures from the real Prometheus: good ground truth, a canary
    returning 5xx: rolled back with the operations reason and the interval's figures in the event."""
    deployment = world.settings().deployment  # pump-bearing-temp: the only test of the module using it
    ex = cluster.exporter
    world.ops = cast(Any, cluster.source(deployment))
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)  # canary at 10 %: the step's snapshot is taken
    assert world.backend.traffic["canary"] == 10
    world.canary_rows(120, 0.0)
    ex.observe(deployment, "main", 450)
    ex.observe(deployment, "canary", 35)
    ex.observe(deployment, "canary", 15, code="500")
    cluster.scraped(deployment)
    world.run(ctl, 60)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    rolling_back = next(e for e in world.events() if e.decision == "rolling_back")
    assert rolling_back.ops is not None and rolling_back.ops["canary_requests"] == 50
    assert rolling_back.ops["canary_error_rate"] == pytest.approx(0.3)
    assert "operations: canary error rate 0.300 over 50 requests" in rolling_back.reason
