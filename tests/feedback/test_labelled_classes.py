"""Labelled examples of classifiers: the record carries class labels and probabilities, decodes the
records written before those fields, refuses what it does not write; the joiner joins a classifier's
numeric labels and counts (never crashes on) string labels or null predictions."""

from __future__ import annotations

import doctest
import json
from typing import Any

import driftloop_feedback.labelled
import driftloop_feedback.records
import orjson
import pytest
from driftloop_feedback.join.rules import JoinRules
from driftloop_feedback.join.shard import JoinShard
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.records import LabelledExample, TruthRecord, UndecodableRecord

from tests.feedback.helpers import event, v2_request

BASE: dict[str, Any] = {
    "example_id": "r1:0",
    "request_id": "r1",
    "row": 0,
    "features": [1.0, 2.0],
    "prediction": 2.0,
    "truth": 2.5,
    "endpoint": "main",
    "model_version": "3",
    "event_time": 10.0,
    "truth_time": 11.0,
    "joined_by": "request",
    "asset_id": None,
}


def example(**changes: Any) -> LabelledExample:
    fields = {**BASE, **changes}
    fields["features"] = tuple(fields["features"])
    return LabelledExample(**fields)


def test_a_regression_example_encodes_exactly_as_before() -> None:
    """The joiner writes the twelve fields itself (shard.encode_example): the bytes must not change."""
    assert example().encode() == orjson.dumps(BASE)


@pytest.mark.parametrize(
    "changes",
    [
        {"prediction": "hot", "truth": "ok", "probabilities": (0.8, 0.2), "classes": ("hot", "ok")},
        {"prediction": 1.0, "truth": 0.0, "probabilities": (0.3, 0.7), "classes": (0.0, 1.0)},
        {"prediction": 2.0, "truth": 1.0},  # numeric labels, as the joiner writes them today
        {"probabilities": (0.1, 0.9)},
    ],
    ids=["str-labels", "numeric-labels", "bare-numeric", "probabilities-only"],
)
def test_classification_examples_round_trip(changes: dict[str, Any]) -> None:
    e = example(**changes)
    assert LabelledExample.decode(e.encode()) == e


def test_records_written_before_the_class_fields_decode_with_them_unset() -> None:
    old = {**BASE, "features": [1, 2], "prediction": 2, "event_time": 10}  # integers, as JSON allows
    del old["asset_id"]
    decoded = LabelledExample.decode(json.dumps(old).encode())
    assert decoded == example(prediction=2.0)
    assert decoded.probabilities is None and decoded.classes is None
    assert isinstance(decoded.prediction, float) and decoded.features == (1.0, 2.0)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"truth": True}, r"truth must be a number or a class label string, got True"),
        ({"prediction": [1.0]}, r"prediction must be a number or a class label string"),
        ({"truth": None}, r"truth must be a number"),
        ({"features": ["a"]}, r"could not convert string to float"),
        ({"classes": [0, 1], "probabilities": [1.0]}, r"1 probabilities for 2 classes"),
        ({"classes": [0, None]}, r"classes must be a number"),
        ({"example_id": None, "row": "x"}, r"invalid literal for int"),
    ],
)
def test_a_record_that_encode_does_not_write_is_refused_saying_what(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(UndecodableRecord, match=message):
        LabelledExample.decode(orjson.dumps({**BASE, **changes}))
    with pytest.raises(UndecodableRecord, match=r"missing|'truth_time'"):
        LabelledExample.decode(orjson.dumps({k: v for k, v in BASE.items() if k != "truth_time"}))
    with pytest.raises(UndecodableRecord, match="not a labelled example"):
        LabelledExample.decode(b"{nope")


def test_the_deduper_passes_class_labels_through() -> None:
    e = example(prediction="hot", truth="ok", probabilities=(0.6, 0.4), classes=("hot", "ok"))
    out = list(LabelledDeduper(window=10).feed([e.encode(), e.encode()]))
    assert out == [e]


def classifier_response(datatype: str, labels: list[Any], probabilities: list[list[float]]) -> bytes:
    return json.dumps(
        {
            "model_name": "bearing-state",
            "model_version": "4",
            "parameters": {"model_version": "4", "classes": [0, 1, 2]},
            "outputs": [
                {"name": "prediction", "shape": [len(labels)], "datatype": datatype, "data": labels},
                {
                    "name": "probabilities",
                    "shape": [len(labels), 3],
                    "datatype": "FP64",
                    "data": [p for row in probabilities for p in row],
                },
            ],
        }
    ).encode()


def test_a_classifiers_numeric_labels_are_joined_with_numeric_truth() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    proba = [[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]]
    shard.on_log_event(event("request", "c1", "bearing-state", v2_request([[1.0], [2.0]])), 1.0)
    shard.on_log_event(
        event("response", "c1", "bearing-state", classifier_response("INT64", [2, 0], proba)), 1.0
    )
    shard.on_truth(TruthRecord("c1", 0, 2.0, 5.0), logged_at=5.0)
    shard.on_truth(TruthRecord("c1", 1, 1.0, 5.0), logged_at=5.0)
    got = [(e.example_id, e.prediction, e.truth, e.model_version) for e in shard.drain_labelled()]
    assert got == [("c1:0", 2.0, 2.0, "4"), ("c1:1", 0.0, 1.0, "4")]


@pytest.mark.parametrize(
    "datatype,labels",
    [("BYTES", ["hot", "cool"]), ("FP64", [None, 1.0]), ("FP64", ["x", 1.0])],
    ids=["string-labels", "null", "string-in-fp64"],
)
def test_predictions_the_store_cannot_keep_are_counted_malformed_not_raised(
    datatype: str, labels: list[Any]
) -> None:
    shard = JoinShard(JoinRules(mode="request"))
    shard.on_log_event(event("request", "c2", "bearing-state", v2_request([[1.0], [2.0]])), 1.0)
    response = classifier_response(datatype, labels, [[0.5, 0.5, 0.0]] * 2)
    shard.on_log_event(event("response", "c2", "bearing-state", response), 1.0)
    assert shard.counters.malformed == 1
    assert len(shard.store) == 0 and not shard.assembler.partial
    shard.on_truth(TruthRecord("c2", 0, 2.0, 5.0), logged_at=5.0)
    assert shard.drain_labelled() == []


@pytest.mark.parametrize("module", [driftloop_feedback.records, driftloop_feedback.labelled])
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
