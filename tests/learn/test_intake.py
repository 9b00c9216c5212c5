"""A poll read at once keeps the rules of reading one record at a time: what is refused, why, and the
order of the rows kept."""

from __future__ import annotations

import orjson
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.learn.challenger import Challenger
from driftloop_feedback.learn.intake import read_poll
from driftloop_feedback.learn.replay import ReplayBuffer

from driftloop.eventlog import Record
from tests.learn.helpers import examples, regression_rows, regressor_champion


def record(offset: int, value: bytes) -> Record:
    return Record("driftloop.labelled", 0, offset, 0, None, value)


def test_a_mixed_poll_is_read_as_one_record_at_a_time_would_be() -> None:
    X, y = regression_rows(4, 1)
    good = [e.encode() for e in examples(X, y)]
    plain = orjson.loads(good[0])
    values = [
        good[0],
        b"not json",  # undecodable
        orjson.dumps({**plain, "example_id": "int-truth", "truth": 41}),  # decode makes it 41.0: kept
        orjson.dumps({k: v for k, v in plain.items() if k != "endpoint"}),  # undecodable (a field missing)
        orjson.dumps({**plain, "example_id": "bool-truth", "truth": True}),  # undecodable (decode refuses)
        good[0],  # duplicate
        orjson.dumps({**plain, "example_id": "null", "features": [1.0, None, 2.0]}),  # features
        orjson.dumps({**plain, "example_id": "wide", "features": [1.0, 2.0, 3.0, 4.0]}),  # features
        orjson.dumps({**plain, "example_id": "string-truth", "truth": "hot"}),  # target (regression)
        good[1],
    ]
    deduper = LabelledDeduper(100)
    challenger = Challenger(regressor_champion(), ReplayBuffer(10, 0.0))
    intake = read_poll([record(i, v) for i, v in enumerate(values)], deduper, challenger)
    assert intake.rows.ids == ["r0:0", "int-truth", "r1:0"]
    assert intake.rows.targets == [y[0], 41.0, y[1]]
    assert intake.rows.offsets.tolist() == [0, 2, 9]
    assert intake.rows.X.shape == (3, 3)
    assert intake.duplicates == 1 == deduper.duplicates
    assert [(r.record.offset, r.reason) for r in intake.refused] == [
        (1, "undecodable"),
        (3, "undecodable"),
        (4, "undecodable"),
        (6, "features"),
        (7, "features"),
        (8, "target"),
    ]


def test_a_plain_poll_keeps_every_row_in_order() -> None:
    X, y = regression_rows(50, 2)
    values = [e.encode() for e in examples(X, y)]
    intake = read_poll(
        [record(i, v) for i, v in enumerate(values)],
        LabelledDeduper(100),
        Challenger(regressor_champion(), ReplayBuffer(10, 0.0)),
    )
    assert intake.rows.ids == [f"r{i}:0" for i in range(50)] and not intake.refused
    assert (intake.rows.X == X).all() and intake.rows.targets == y.tolist()


def test_a_record_with_class_probabilities_is_read_by_decode_in_a_plain_poll() -> None:
    """``probabilities``/``classes`` send a record through ``LabelledExample.decode``, which refuses
    probabilities of another count than the classes; the other records stay plain."""
    X, y = regression_rows(3, 4)
    good = [e.encode() for e in examples(X, y)]
    plain = orjson.loads(good[0])
    mismatched = {**plain, "example_id": "probs", "probabilities": [0.2, 0.8], "classes": [1.0, 2.0, 3.0]}
    values = [good[0], orjson.dumps(mismatched), good[1], good[2]]
    intake = read_poll(
        [record(i, v) for i, v in enumerate(values)],
        LabelledDeduper(100),
        Challenger(regressor_champion(), ReplayBuffer(10, 0.0)),
    )
    assert intake.rows.ids == ["r0:0", "r1:0", "r2:0"]
    assert [(r.record.offset, r.reason) for r in intake.refused] == [(1, "undecodable")]
    assert "2 probabilities for 3 classes" in intake.refused[0].detail
