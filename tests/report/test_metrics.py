"""Prequential metrics of the loop, a frozen model and a naive baseline on tiny hand-computed streams."""

from __future__ import annotations

import math

import pytest
from driftloop_feedback.report import FeatureColumn, LastTruth, LoopRecords, ReportError, WindowSpec, score
from driftloop_feedback.report.summary import build_report

from tests.report.streams import Doubler, Threshold, example, logged

FLOOR = 1e-4


def regression_stream() -> list:
    # truth 1..4; loop errors .5, 0, 1, 0; the frozen model (2 x feature) errs only on the third row
    rows = [((0.5,), 1.5, 1.0), ((1.0,), 2.0, 2.0), ((2.0,), 2.0, 3.0), ((2.0,), 4.0, 4.0)]
    return logged([example(i, f, p, t, version="1" if i < 2 else "2") for i, (f, p, t) in enumerate(rows)])


def test_regression_loop_frozen_and_last_truth_baseline() -> None:
    stream = score(regression_stream(), Doubler(), LastTruth(1))
    report = build_report(LoopRecords(), stream, window=WindowSpec("count", 2), change_at=2.5)
    assert report.task == "regression"
    assert report.overall["loop"] == pytest.approx({"mae": 0.375, "rmse": math.sqrt(1.25 / 4)})
    assert report.overall["frozen"] == pytest.approx({"mae": 0.25, "rmse": 0.5})
    # baseline predictions: none, 1, 2, 3 -> errors 1, 1, 1 on the three rows it scores
    assert report.overall["baseline"] == pytest.approx({"mae": 1.0, "rmse": 1.0})
    assert report.scored == {"loop": 4, "frozen": 4, "baseline": 3}
    assert report.before is not None and report.after is not None
    assert (report.before.rows, report.after.rows) == (2, 2)
    assert report.before.metrics["loop"]["mae"] == pytest.approx(0.25)
    assert report.before.metrics["frozen"]["mae"] == pytest.approx(0.0)
    assert report.after.metrics["loop"]["mae"] == pytest.approx(0.5)
    assert report.after.metrics["frozen"]["mae"] == pytest.approx(0.5)
    assert [(w.rows, w.model_versions) for w in report.series] == [(2, ("1",)), (2, ("2",))]
    assert report.series[1].metrics["baseline"]["mae"] == pytest.approx(1.0)
    assert [(v.model_version, v.rows, v.metrics["loop"]["mae"]) for v in report.by_version] == [
        ("1", 2, pytest.approx(0.25)),
        ("2", 2, pytest.approx(0.5)),
    ]


def test_persistence_baseline_reads_a_feature_column() -> None:
    stream = score(regression_stream(), Doubler(), FeatureColumn(0, "reading"))
    report = build_report(LoopRecords(), stream)
    # predictions .5, 1, 2, 2 against 1, 2, 3, 4
    assert report.overall["baseline"]["mae"] == pytest.approx((0.5 + 1 + 1 + 2) / 4)
    assert report.baseline_name == "persistence of reading"
    with pytest.raises(ReportError, match="feature 3"):
        score(regression_stream(), Doubler(), FeatureColumn(3))


def test_last_truth_follows_each_asset_in_event_time_order() -> None:
    # two assets interleaved and written out of event-time order
    rows = [
        example(0, (0.0,), 0.0, 10.0, asset="x", event_time=1.0),
        example(1, (0.0,), 0.0, 20.0, asset="y", event_time=2.0),
        example(2, (0.0,), 0.0, 13.0, asset="x", event_time=3.0),
        example(3, (0.0,), 0.0, 26.0, asset="y", event_time=4.0),
    ]
    stream = score(logged(rows[::-1]), Doubler(), LastTruth(1))
    # x: 13 vs 10 -> 3; y: 26 vs 20 -> 6
    assert build_report(LoopRecords(), stream).overall["baseline"]["mae"] == pytest.approx(4.5)


def classification_stream(with_probabilities: bool = True) -> list:
    truth = ["a", "b", "a", "a"]
    loop = ["a", "a", "a", "b"]
    probs = [(0.8, 0.2), (0.6, 0.4), (0.7, 0.3), (0.4, 0.6)]
    features = [0.9, 0.2, 0.6, 0.4]
    return logged(
        [
            example(
                i, (features[i],), loop[i], truth[i],
                probabilities=probs[i] if with_probabilities else None,
                classes=("a", "b") if with_probabilities else None,
            )
            for i in range(4)
        ]
    )  # fmt: skip


def test_classification_accuracy_and_log_loss() -> None:
    stream = score(classification_stream(), Threshold(), LastTruth(1), probability_floor=FLOOR)
    report = build_report(LoopRecords(), stream)
    assert report.task == "classification"
    loop, frozen, baseline = (report.overall[s] for s in ("loop", "frozen", "baseline"))
    # the loop's own probabilities of the true class: .8, .4, .7, .4
    assert loop == pytest.approx({"accuracy": 0.5, "log_loss": -sum(map(math.log, (0.8, 0.4, 0.7, 0.4))) / 4})
    # the frozen model: p(a) = feature -> a, b, a, b; p(true) .9, .8, .6, .4
    assert frozen == pytest.approx(
        {"accuracy": 0.75, "log_loss": -sum(map(math.log, (0.9, 0.8, 0.6, 0.4))) / 4}
    )
    # last class: -, a, b, a against b, a, a: wrong, wrong, right; certain labels, floored when wrong
    assert baseline == pytest.approx({"accuracy": 1 / 3, "log_loss": -2 * math.log(FLOOR) / 3})


def test_loop_log_loss_from_the_served_version_rescored_else_unknown() -> None:
    examples = classification_stream(with_probabilities=False)
    rescored = build_report(
        LoopRecords(), score(examples, Threshold(), LastTruth(1), models={"1": Threshold()})
    )
    assert rescored.overall["loop"]["log_loss"] == pytest.approx(rescored.overall["frozen"]["log_loss"])
    assert rescored.overall["loop"]["accuracy"] == 0.5  # still what was served, not re-scored
    unknown = build_report(LoopRecords(), score(examples, Threshold(), LastTruth(1)))
    assert unknown.overall["loop"]["log_loss"] is None
    assert unknown.overall["loop"]["accuracy"] == 0.5
    assert any("log loss is unknown" in n for n in unknown.notes)


def test_windows_by_event_time() -> None:
    stream = score(regression_stream(), Doubler(), LastTruth(1))
    report = build_report(LoopRecords(), stream, window=WindowSpec("event_time", 3.0))
    # event times 1..4 from origin 1: [1, 4) holds three rows, [4, 7) one
    assert [(w.start, w.end, w.rows) for w in report.series] == [(1.0, 4.0, 3), (4.0, 7.0, 1)]
    assert report.series[0].metrics["loop"]["mae"] == pytest.approx(0.5)


def test_no_examples_and_a_model_that_does_not_fit_are_refused_with_what_to_fix() -> None:
    with pytest.raises(ReportError, match="no labelled examples"):
        score([], Doubler(), LastTruth(1))

    class Broken:
        def predict(self, X: object) -> object:
            raise ValueError("X has 1 features, but the model expects 5")

    with pytest.raises(ReportError, match="frozen model could not predict"):
        score(regression_stream(), Broken(), LastTruth(1))
