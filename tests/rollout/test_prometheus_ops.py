"""PrometheusOpsSource on httpx.MockTransport: the query it sends, how it reads the answer (codes, buckets,
counter resets) and every error path; the settings that choose it; a failing source in the controller."""

from __future__ import annotations

import math
from typing import Any, cast
from urllib.parse import parse_qs

import httpx
import pytest
from driftloop_feedback.rollout.errors import BackendError, RolloutConfigError
from driftloop_feedback.rollout.ops import compare
from driftloop_feedback.rollout.prometheus_ops import (
    PrometheusOpsSource,
    bucket_query,
    is_server_error,
)
from driftloop_feedback.rollout.settings import RolloutSettings
from pydantic import ValidationError

from tests.rollout.conftest import World

LES = ("0.005", "0.01", "0.025", "0.05", "0.1", "+Inf")


def bucket_series(
    predictor: str, counts: dict[str, float], code: str = "200", pod: str = "p1", **extra: str
) -> list[dict[str, Any]]:
    """One executor series per ``le`` (cumulative ``counts`` by bound, the rest carried forward)."""
    out, running = [], 0.0
    for le in LES:
        running = counts.get(le, running)
        labels = {
            "__name__": "seldon_api_executor_server_requests_seconds_bucket",
            "deployment_name": "pump-bearing-temp",
            "predictor_name": predictor,
            "predictor_version": "",
            "service": "predictions",
            "method": "post",
            "code": code,
            "le": le,
            "pod": pod,
            **extra,
        }
        out.append({"metric": labels, "value": [1733390000.0, str(running)]})
    return out


def vector(*series: list[dict[str, Any]]) -> dict[str, Any]:
    result = [s for group in series for s in group]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


class Answers:
    """A MockTransport answering ``/api/v1/query`` with the queued bodies, recording the queries."""

    def __init__(self, *bodies: object, status: int = 200) -> None:
        self.bodies = list(bodies)
        self.status = status
        self.queries: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query"
        self.queries.append(parse_qs(request.content.decode())["query"][0])
        body = self.bodies.pop(0)
        if isinstance(body, str):
            return httpx.Response(self.status, text=body)
        return httpx.Response(self.status, json=body)

    def source(self, **kwargs: Any) -> PrometheusOpsSource:
        return PrometheusOpsSource(
            "http://prometheus.test:9090/", "pump-bearing-temp", transport=httpx.MockTransport(self), **kwargs
        )


def test_the_query_selects_the_deployments_inference_buckets_with_the_extra_matchers() -> None:
    answers = Answers(vector())
    answers.source(extra_selector='namespace="plant"').snapshot()
    assert answers.queries == [
        "seldon_api_executor_server_requests_seconds_bucket{"
        'deployment_name="pump-bearing-temp", '
        'service=~"predictions|/inference\\\\.GRPCInferenceService/ModelInfer", namespace="plant"} or '
        '{__name__=~"driftloop_outlier_scored_rows_total|driftloop_outlier_flagged_rows_total", '
        'deployment_name="pump-bearing-temp", namespace="plant"}'
    ]
    assert bucket_query('a"b\\c').startswith(
        'seldon_api_executor_server_requests_seconds_bucket{deployment_name="a\\"b\\\\c", '
    )


def test_requests_errors_and_buckets_per_predictor_from_the_buckets() -> None:
    answers = Answers(
        vector(
            bucket_series("main", {"0.005": 90, "0.01": 100}),  # 100 OK, 90 under 5 ms
            bucket_series("main", {"0.005": 3}, code="400"),  # the client's fault: not an error
            bucket_series("canary", {"0.05": 8, "+Inf": 10}, code="503"),
            bucket_series("canary", {"0.01": 20}, code="200", pod="p2"),
            bucket_series("canary", {"0.1": 4}, code="Unavailable"),  # gRPC: the server's fault
            bucket_series("canary", {"0.1": 6}, code="InvalidArgument"),  # gRPC: the client's
        )
    )
    snap = answers.source().snapshot()
    assert snap["main"].requests == 103 and snap["main"].errors == 0
    assert snap["main"].buckets[0.005] == 93 and snap["main"].buckets[math.inf] == 103
    assert snap["canary"].requests == 40 and snap["canary"].errors == 14
    assert snap["canary"].buckets[0.01] == 20 and snap["canary"].buckets[0.05] == 28
    assert snap["canary"].p99() == math.inf  # 2 of 40 requests past the last bound
    assert snap["canary"].scored_rows == 0  # the executor has no outlier counts


def test_server_error_codes() -> None:
    assert [is_server_error(c) for c in ("500", "503", "499", "200", "0")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert is_server_error("Internal") and is_server_error("DeadlineExceeded")
    assert not is_server_error("OK") and not is_server_error("NotFound")


def test_snapshots_are_cumulative_across_a_counter_reset() -> None:
    """A canary pod restarting between two snapshots: its counters fall to 0 then grow again; the
    interval's figures are what happened since, not a negative count."""
    answers = Answers(
        vector(bucket_series("canary", {"0.01": 100}), bucket_series("main", {"0.01": 1000})),
        vector(bucket_series("canary", {"0.01": 150}), bucket_series("main", {"0.01": 1500})),
        # the pod restarted: 30 requests since, 10 of them 500s
        vector(
            bucket_series("canary", {"0.01": 20}),
            bucket_series("canary", {"0.01": 10}, code="500"),
            bucket_series("main", {"0.01": 2000}),
        ),
    )
    source = answers.source()
    first, second, third = source.snapshot(), source.snapshot(), source.snapshot()
    settings = RolloutSettings(min_requests=20)
    check = compare(second, third, settings)
    assert check.canary_requests == 30 and check.canary_error_rate == pytest.approx(1 / 3)
    assert check.breach is not None and "canary error rate 0.333 over 30 requests" in check.breach
    assert compare(first, second, settings).canary_requests == 50
    assert third["canary"].requests == 180  # 100 + 50 + 30: never decreasing


def test_the_first_5xx_series_of_a_known_pod_counts_in_full() -> None:
    answers = Answers(
        vector(bucket_series("canary", {"0.01": 100})),
        vector(bucket_series("canary", {"0.01": 130}), bucket_series("canary", {"0.01": 7}, code="500")),
    )
    source = answers.source()
    before, after = source.snapshot(), source.snapshot()
    delta = after["canary"].minus(before["canary"])
    assert delta.requests == 37 and delta.errors == 7


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        (
            {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'},
            400,
            "Prometheus refused the query seldon_api_executor_server_requests_seconds_bucket{"
            'deployment_name="pump-bearing-temp"',
        ),
        (
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            503,
            "timeout: query timed out",
        ),
        ("<html>Bad Gateway</html>", 502, "-> 502, not JSON: not a Prometheus server?"),
        (
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            200,
            "'matrix', not an instant",
        ),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
            200,
            "not a labelled",
        ),
        ([1, 2], 200, "answered list, not a JSON object"),
        ({"detail": "nope"}, 404, "-> 404"),
    ],
)
def test_a_refused_or_malformed_answer_is_a_backend_error_saying_what(
    answer: object, status: int, message: str
) -> None:
    answers = Answers(answer, status=status)
    with pytest.raises(BackendError) as err:
        answers.source().snapshot()
    assert message in str(err.value)


def test_a_negative_or_nan_count_is_refused() -> None:
    series = bucket_series("canary", {"0.01": 5})
    series[0]["value"][1] = "NaN"
    with pytest.raises(BackendError, match="not a count"):
        Answers(vector(series)).source().snapshot()


def test_prometheus_unreachable_is_a_backend_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = PrometheusOpsSource("http://127.0.0.1:9", "d", transport=httpx.MockTransport(refuse))
    with pytest.raises(BackendError, match=r"Prometheus at http://127.0.0.1:9 unreachable \(ConnectError"):
        source.snapshot()


def test_a_selector_that_is_not_label_matchers_is_refused_at_start() -> None:
    with pytest.raises(RolloutConfigError, match="DRIFTLOOP_ROLLOUT_PROMETHEUS_SELECTOR"):
        PrometheusOpsSource("http://p:9090", "d", extra_selector="namespace=plant")
    with pytest.raises(RolloutConfigError):
        PrometheusOpsSource("http://p:9090", "d", extra_selector='x="1"} or vector(1) #')
    PrometheusOpsSource("http://p:9090", "d", extra_selector='namespace="plant", pod=~"pump-.*",').close()


def test_the_ops_source_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RolloutSettings().resolved_ops_source() == "ingress"
    assert RolloutSettings(backend="kubernetes").resolved_ops_source() == "ingress"
    url = "http://prometheus-operated.monitoring:9090"
    assert RolloutSettings(backend="kubernetes", prometheus_url=url).resolved_ops_source() == "prometheus"
    assert RolloutSettings(prometheus_url=url).resolved_ops_source() == "ingress"
    explicit = RolloutSettings(backend="kubernetes", prometheus_url=url, ops_source="ingress")
    assert explicit.resolved_ops_source() == "ingress"
    with pytest.raises(ValidationError, match="DRIFTLOOP_ROLLOUT_PROMETHEUS_URL"):
        RolloutSettings(ops_source="prometheus")
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_OPS_SOURCE", "prometheus")
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_PROMETHEUS_URL", url)
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_PROMETHEUS_SELECTOR", 'namespace="plant"')
    from_env = RolloutSettings()
    assert (
        from_env.resolved_ops_source() == "prometheus" and from_env.prometheus_selector == 'namespace="plant"'
    )


def test_no_prometheus_is_no_ops_verdict_counted_and_said_in_the_events(world: World) -> None:
    """Prometheus down for a whole step: no failed check (no data is not a failure), each interval's
    failure counted, and every check event says why it had no ops figures."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = PrometheusOpsSource(
        "http://127.0.0.1:9", "pump-bearing-temp", transport=httpx.MockTransport(refuse)
    )
    world.ops = cast(Any, source)
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)
    world.canary_rows(120, 0.0)  # better than the champion (off by 1)
    world.run(ctl, 60)
    assert world.backend.traffic["canary"] == 25  # the ground truth passed step 1; ops said nothing
    step = world.events()[-1]
    assert step.decision == "step" and step.ops is not None
    assert step.ops["breach"] is None and step.ops["enough_data"] is False
    assert step.ops["unavailable"] == (
        "no ops verdict: metrics unavailable (Prometheus at http://127.0.0.1:9 unreachable "
        "(ConnectError('connection refused')))"
    )
    assert ctl.metrics.failures.labels("metrics")._value.get() >= 2  # the step's start and its check
    assert ctl.metrics.checks.labels("failed")._value.get() == 0


def test_the_cli_builds_the_source_the_settings_choose() -> None:
    import click
    from driftloop_feedback.rollout.cli import _ops_source
    from driftloop_feedback.rollout.ops import HttpOpsSource

    url = "http://prometheus-operated.monitoring:9090"
    source = _ops_source(
        RolloutSettings(backend="kubernetes", prometheus_url=url, prometheus_selector='namespace="plant"')
    )
    assert isinstance(source, PrometheusOpsSource) and source.url == url
    assert source.query.endswith(', namespace="plant"}')
    source.close()
    ingress = _ops_source(RolloutSettings(backend="kubernetes", metrics_url="http://ingress:8080/metrics"))
    assert isinstance(ingress, HttpOpsSource)
    ingress.close()
    with pytest.raises(click.ClickException, match="DRIFTLOOP_ROLLOUT_PROMETHEUS_URL"):
        _ops_source(RolloutSettings(backend="kubernetes"))
