"""The ops gate's outlier-rate check: canary vs main over the interval, from the ingress's
``driftloop_ingress_scored_rows_total`` / ``driftloop_ingress_outlier_rows_total`` (fake exposition
text), as a one-sided Farrington-Manning test with a stated error rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from driftloop_feedback.rollout import RolloutSettings
from driftloop_feedback.rollout.ops import OpsCheck, PredictorCounts, compare, parse_ingress_metrics
from driftloop_feedback.rollout.outlier_gate import OutlierRateTest, outlier_rate_test
from scipy.stats import norm

from tests.rollout.conftest import CANDIDATE, World

DEPLOYMENT = "pump-bearing-temp"


def exposition(predictors: dict[str, tuple[int, int, int]], deployment: str = DEPLOYMENT) -> str:
    """The ingress's /metrics text: predictor -> (requests, rows scored, rows flagged)."""
    lines = [
        "# TYPE driftloop_ingress_requests counter",
        *(
            f'driftloop_ingress_requests_total{{deployment="{deployment}",predictor="{p}",code="200"}} {r}'
            for p, (r, _, _) in predictors.items()
        ),
        "# TYPE driftloop_ingress_scored_rows counter",
        *(
            f'driftloop_ingress_scored_rows_total{{deployment="{deployment}",predictor="{p}"}} {s}'
            for p, (_, s, _) in predictors.items()
        ),
        "# TYPE driftloop_ingress_outlier_rows counter",
        *(
            f'driftloop_ingress_outlier_rows_total{{deployment="{deployment}",predictor="{p}"}} {o}'
            for p, (_, _, o) in predictors.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def check(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]], **settings: object
) -> OpsCheck:
    s = RolloutSettings(**settings)  # type: ignore[arg-type]
    return compare(
        parse_ingress_metrics(exposition(before), DEPLOYMENT),
        parse_ingress_metrics(exposition(after), DEPLOYMENT),
        s,
    )


def test_the_ingress_row_counters_are_parsed_per_predictor_of_the_deployment() -> None:
    text = exposition({"main": (10, 40, 2), "canary": (3, 12, 5)}) + exposition(
        {"main": (99, 99, 99)}, deployment="other"
    )
    counts = parse_ingress_metrics(text, DEPLOYMENT)
    assert (counts["main"].scored_rows, counts["main"].outlier_rows) == (40, 2)
    assert (counts["canary"].scored_rows, counts["canary"].outlier_rows) == (12, 5)


def test_a_canary_flagging_far_more_rows_than_main_is_a_breach_saying_test_alpha_n_and_rates() -> None:
    ops = check(
        {"main": (100, 500, 25), "canary": (10, 50, 50)},  # before the interval
        {"main": (600, 2300, 115), "canary": (110, 350, 110)},  # main 90/1800, canary 60/300 in it
    )
    assert ops.breach is not None
    assert "Farrington-Manning score test, one-sided" in ops.breach
    assert "alpha = 0.01" in ops.breach
    assert "canary outlier rate 0.200 (60/300 rows)" in ops.breach
    assert "main's 0.050 (90/1800 rows)" in ops.breach
    assert "by more than 0.05" in ops.breach
    figures = ops.as_dict()
    assert figures["canary_scored_rows"] == 300 and figures["main_scored_rows"] == 1800
    assert figures["canary_outlier_rate"] == pytest.approx(0.2)
    assert figures["main_outlier_rate"] == pytest.approx(0.05)
    test = figures["outlier_test"]
    assert isinstance(test, dict) and test["verdict"] == "breach" and test["p_value"] <= 0.01


def test_the_interval_counts_not_the_totals() -> None:
    # the canary flagged every row before the interval; in it, as many as main
    ops = check(
        {"main": (100, 1000, 50), "canary": (100, 1000, 1000)},
        {"main": (600, 2800, 140), "canary": (200, 1300, 1015)},
    )
    assert ops.breach is None
    assert ops.outliers is not None and ops.outliers.canary_rate == pytest.approx(0.05)
    test = ops.as_dict()["outlier_test"]
    assert isinstance(test, dict) and test["verdict"] == "within"


def test_an_increase_within_the_margin_is_no_breach() -> None:
    # canary 0.08 vs main 0.05 on many rows: clearly higher, but by less than the 0.05 margin
    ops = check({}, {"main": (1000, 20000, 1000), "canary": (1000, 20000, 1600)})
    assert ops.breach is None and ops.outliers is not None and ops.outliers.decided
    # the same gap with no margin is a breach
    strict = check(
        {}, {"main": (1000, 20000, 1000), "canary": (1000, 20000, 1600)}, max_outlier_rate_increase=0
    )
    assert strict.breach is not None and "by more than 0 " in strict.breach


def test_too_few_scored_rows_is_no_verdict_never_a_failure() -> None:
    # every canary row flagged, but 60 rows < min_scored_rows (100)
    ops = check({}, {"main": (500, 2000, 20), "canary": (60, 60, 60)})
    assert ops.breach is None
    assert ops.outliers is not None and not ops.outliers.decided
    test = ops.as_dict()["outlier_test"]
    assert isinstance(test, dict) and test["verdict"] == "no verdict" and test["p_value"] is None
    assert "no outlier verdict" in ops.outliers.message()
    # ... and main too thin is no verdict either
    thin_main = check({}, {"main": (50, 50, 0), "canary": (500, 500, 400)})
    assert thin_main.breach is None and thin_main.outliers is not None and not thin_main.outliers.decided


def test_a_graph_without_an_outlier_node_has_no_outlier_figures() -> None:
    s = RolloutSettings()
    before = {"main": PredictorCounts(100), "canary": PredictorCounts(10)}
    after = {"main": PredictorCounts(600), "canary": PredictorCounts(110)}
    ops = compare(before, after, s)
    assert ops.outliers is None and ops.breach is None
    assert ops.as_dict()["outlier_test"] is None and ops.as_dict()["canary_outlier_rate"] is None


def test_the_outlier_settings_come_from_the_rollout_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_MAX_OUTLIER_RATE_INCREASE", "0.1")
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_OUTLIER_ALPHA", "0.05")
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_MIN_SCORED_ROWS", "500")
    s = RolloutSettings()
    assert (s.max_outlier_rate_increase, s.outlier_alpha, s.min_scored_rows) == (0.1, 0.05, 500)
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_OUTLIER_ALPHA", "0.7")
    with pytest.raises(ValueError, match="outlier_alpha"):
        RolloutSettings()


def _test(x_c: int, n_c: int, x_m: int, n_m: int, **settings: float) -> OutlierRateTest:
    """The gate's test from (outliers, rows) of the canary, then of main."""
    return outlier_rate_test(
        canary_outliers=x_c,
        canary_rows=n_c,
        main_outliers=x_m,
        main_rows=n_m,
        **settings,  # type: ignore[arg-type]
    )


def _fm_closed_form(x_c: int, n_c: int, x_m: int, n_m: int, margin: float) -> float:
    """Farrington & Manning's (1990) closed-form z for H0: p_c - p_m = margin (an independent check)."""
    pc, pm = x_c / n_c, x_m / n_m
    theta = n_m / n_c
    a = 1 + theta
    b = -(1 + theta + pc + theta * pm + margin * (theta + 2))
    c = margin**2 + margin * (2 * pc + theta + 1) + pc + theta * pm
    d = -pc * margin * (1 + margin)
    v = b**3 / (27 * a**3) - b * c / (6 * a**2) + d / (2 * a)
    u = math.copysign(math.sqrt(b**2 / (9 * a**2) - c / (3 * a)), v)
    w = (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3
    pc_r = 2 * u * math.cos(w) - b / (3 * a)
    pm_r = pc_r - margin
    return (pc - pm - margin) / math.sqrt(pc_r * (1 - pc_r) / n_c + pm_r * (1 - pm_r) / n_m)


@pytest.mark.parametrize(
    "x_c,n_c,x_m,n_m,margin",
    [(60, 300, 90, 1800, 0.05), (12, 150, 40, 900, 0.05), (3, 120, 0, 400, 0.02), (50, 100, 10, 100, 0.2)],
)
def test_the_statistic_is_farrington_manning(x_c: int, n_c: int, x_m: int, n_m: int, margin: float) -> None:
    test = _test(x_c, n_c, x_m, n_m, margin=margin, alpha=0.05, min_rows=1)
    assert test.z == pytest.approx(_fm_closed_form(x_c, n_c, x_m, n_m, margin), rel=1e-5)
    assert test.p_value == pytest.approx(norm.sf(test.z))


def test_with_no_margin_it_is_the_pooled_two_proportion_z_test() -> None:
    test = _test(30, 200, 60, 800, margin=0.0, alpha=0.05, min_rows=1)
    pooled = 90 / 1000
    z = (30 / 200 - 60 / 800) / math.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 800))
    assert test.z == pytest.approx(z, rel=1e-6)


def _false_breaches(p_main: float, p_canary: float, n_c: int, n_m: int, margin: float, alpha: float) -> float:
    hits = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        x_c, x_m = int(rng.binomial(n_c, p_canary)), int(rng.binomial(n_m, p_main))
        hits += _test(x_c, n_c, x_m, n_m, margin=margin, alpha=alpha, min_rows=100).breach
    return hits / 400


# 400 seeds: the standard error of a rate near 0.05 is 0.011; slack 0.03 is about 3 of them
@pytest.mark.parametrize(
    "p_main,gap,n_c,n_m,margin,alpha",
    [
        (0.05, 0.0, 300, 2700, 0.05, 0.05),  # equal true rates (the default margin)
        (0.05, 0.05, 300, 2700, 0.05, 0.05),  # the worst case of H0: exactly at the margin
        (0.02, 0.05, 100, 900, 0.05, 0.05),  # ... with the fewest rows that give a verdict
        (0.10, 0.0, 500, 4500, 0.0, 0.05),  # equal true rates, no margin
        (0.05, 0.05, 300, 2700, 0.05, 0.01),  # the default alpha
    ],
)
def test_a_canary_within_the_margin_breaches_at_most_alpha_of_the_time(
    p_main: float, gap: float, n_c: int, n_m: int, margin: float, alpha: float
) -> None:
    rate = _false_breaches(p_main, p_main + gap, n_c, n_m, margin, alpha)
    assert rate <= alpha + 0.03


def test_a_canary_well_past_the_margin_is_caught() -> None:
    hits = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        x_c, x_m = int(rng.binomial(300, 0.25)), int(rng.binomial(2700, 0.05))
        hits += _test(x_c, 300, x_m, 2700, margin=0.05, alpha=0.01, min_rows=100).breach
    assert hits / 400 >= 0.95


def test_an_outlier_breach_is_a_failed_check_and_its_figures_are_in_the_event(world: World) -> None:
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)
    world.canary_rows(120, 0.0)  # ground truth alone would pass the step
    world.ops.counts["main"] = PredictorCounts(500, 0, {}, 2000, 100)
    world.ops.counts["canary"] = PredictorCounts(50, 0, {}, 200, 80)  # 0.40 vs main's 0.05
    world.run(ctl, 60)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.status(CANDIDATE) == "rejected"
    rolling_back = world.events()[-2]
    assert rolling_back.decision == "rolling_back" and rolling_back.ops is not None
    assert rolling_back.ops["canary_outlier_rate"] == pytest.approx(0.4)
    assert rolling_back.ops["main_outlier_rate"] == pytest.approx(0.05)
    assert rolling_back.ops["outlier_test"]["verdict"] == "breach"
    assert rolling_back.reason is not None
    assert "last: operations: canary outlier rate 0.400 (80/200 rows)" in rolling_back.reason
