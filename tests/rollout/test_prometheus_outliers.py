"""The outlier-rate gate on a cluster's figures, on httpx.MockTransport: PrometheusOpsSource reads the
outlier runtime's ``driftloop_outlier_scored_rows_total`` / ``driftloop_outlier_flagged_rows_total``
per predictor (a node's two counters reset together) and ``compare``'s outlier test judges them as it
judges the local ingress's. The real processes (MLServer, Prometheus): test_prometheus_outliers_server.py."""

from __future__ import annotations

from typing import Any

from driftloop_feedback.rollout.ops import compare
from driftloop_feedback.rollout.settings import RolloutSettings

from tests.rollout.test_prometheus_ops import Answers, bucket_series, vector

SETTINGS = RolloutSettings(min_requests=20, min_scored_rows=100)


def row_series(
    predictor: str, scored: float, flagged: float, pod: str = "p1", **extra: str
) -> list[dict[str, Any]]:
    """The two counters of one outlier node in one pod, as the runtime labels them."""
    labels = {
        "deployment_name": "pump-bearing-temp",
        "predictor_name": predictor,
        "model": "bearing-outlier",
        "namespace": "plant",
        "pod": pod,
        **extra,
    }
    return [
        {
            "metric": {"__name__": "driftloop_outlier_scored_rows_total", **labels},
            "value": [1.0, str(scored)],
        },
        {
            "metric": {"__name__": "driftloop_outlier_flagged_rows_total", **labels},
            "value": [1.0, str(flagged)],
        },
    ]


def test_scored_and_flagged_rows_per_predictor_fill_the_snapshot() -> None:
    answers = Answers(
        vector(
            bucket_series("main", {"0.01": 100}),
            row_series("main", 1000, 40),
            row_series("main", 500, 30, pod="p2"),  # a second replica of main
            row_series("canary", 300, 90),
            row_series("", 50, 50),  # a node outside a Seldon predictor (no PREDICTOR_ID): not anyone's
        )
    )
    snap = answers.source().snapshot()
    assert (snap["main"].scored_rows, snap["main"].outlier_rows) == (1500, 70)
    assert (snap["canary"].scored_rows, snap["canary"].outlier_rows) == (300, 90)
    assert snap["main"].requests == 100 and snap["canary"].requests == 0  # rows without executor series
    assert set(snap) == {"main", "canary"}


def test_a_canary_with_a_clearly_higher_outlier_rate_fails_the_check() -> None:
    answers = Answers(
        vector(row_series("main", 100, 5), row_series("canary", 100, 5)),
        vector(row_series("main", 1900, 95), row_series("canary", 400, 95)),  # main 5 %, canary 30 %
    )
    source = answers.source()
    before, after = source.snapshot(), source.snapshot()
    check = compare(before, after, SETTINGS)
    assert check.outliers is not None and check.outliers.breach
    assert (check.outliers.canary_rows, check.outliers.canary_outliers) == (300, 90)
    assert (check.outliers.main_rows, check.outliers.main_outliers) == (1800, 90)
    assert check.breach is not None and check.breach.startswith("canary outlier rate 0.300 (90/300 rows)")


def test_a_restarted_outlier_pod_neither_hides_its_outliers_nor_reads_as_negative_rows() -> None:
    """The canary's outlier pod restarts between two readings: its counters start again at 0; the rows
    since the restart count in full, as for the executor's buckets."""
    answers = Answers(
        vector(row_series("main", 1000, 50), row_series("canary", 500, 25)),
        vector(row_series("main", 2800, 140), row_series("canary", 200, 80)),  # canary restarted
    )
    source = answers.source()
    before, after = source.snapshot(), source.snapshot()
    check = compare(before, after, SETTINGS)
    assert check.outliers is not None
    assert (check.outliers.canary_rows, check.outliers.canary_outliers) == (200, 80)
    assert (check.outliers.main_rows, check.outliers.main_outliers) == (1800, 90)
    assert check.outliers.breach
