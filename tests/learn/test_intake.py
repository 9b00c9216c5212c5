"""A poll read at once keeps the rules of reading one record at a time: what is refused, why, and the
order of the rows kept."""

from __future__ import annotations

import orjson
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.labelled_batch import encode_examples
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


def _batch_poll(values: list[bytes], partition: int = 0) -> list[Record]:
    return [Record("driftloop.labelled", partition, i, 0, None, v) for i, v in enumerate(values)]


def test_batch_records_read_as_their_examples_would_be_one_record_each() -> None:
    """The columnar path keeps the JSON path's rules: the same rows, refusals, duplicates and order."""
    X, y = regression_rows(60, 5)
    labelled = examples(X, y)
    bad_features = labelled[7].__class__(
        **{**labelled[7].__dict__, "example_id": "nan", "features": (1.0, float("nan"), 2.0)}
    )
    bad_target = labelled[7].__class__(**{**labelled[7].__dict__, "example_id": "hot", "truth": "hot"})
    stream = [*labelled[:30], bad_features, *labelled[25:35], bad_target, *labelled[35:]]  # 5 resent
    champion = regressor_champion()
    by_json = read_poll(
        _batch_poll([e.encode() for e in stream]),
        LabelledDeduper(100),
        Challenger(champion, ReplayBuffer(10, 0.0)),
    )
    by_batch = read_poll(
        _batch_poll(encode_examples(stream, max_rows=16)),
        LabelledDeduper(100),
        Challenger(champion, ReplayBuffer(10, 0.0)),
    )
    assert by_batch.rows.ids == by_json.rows.ids == [e.example_id for e in labelled]
    assert (by_batch.rows.X == by_json.rows.X).all()
    assert list(by_batch.rows.targets) == list(by_json.rows.targets) == y.tolist()
    assert list(by_batch.rows.predictions) == list(by_json.rows.predictions)
    assert (by_batch.rows.event_times == by_json.rows.event_times).all()
    assert by_batch.duplicates == by_json.duplicates == 5
    assert by_batch.examples == by_json.examples == len(stream)
    assert (
        [r.reason for r in by_batch.refused] == [r.reason for r in by_json.refused] == ["features", "target"]
    )
    assert "example 14 of the record" in by_batch.refused[0].detail  # row 30 of the stream, record 1
    # an example's place is (partition, offset of its record, index in it): the rows carry the offset
    assert by_batch.rows.offsets.tolist()[:20] == [0] * 16 + [1] * 4
    assert by_batch.rows.sources[:1] == ["driftloop.labelled/0"]


def test_a_corrupt_batch_record_is_refused_once_and_the_poll_goes_on() -> None:
    X, y = regression_rows(30, 6)
    labelled = examples(X, y)
    first, second, third = encode_examples(labelled, max_rows=10)
    values = [first, second[: len(second) // 2], b"DLLB\x07" + second[5:], third, labelled[0].encode()]
    intake = read_poll(
        _batch_poll(values), LabelledDeduper(100), Challenger(regressor_champion(), ReplayBuffer(10, 0.0))
    )
    assert intake.rows.ids == [e.example_id for e in labelled[:10] + labelled[20:]]
    assert [(r.record.offset, r.reason) for r in intake.refused] == [(1, "undecodable"), (2, "undecodable")]
    assert "truncated" in intake.refused[0].detail and "version 7" in intake.refused[1].detail
    assert intake.duplicates == 1  # the JSON record repeats an example of the first batch record
    assert intake.examples == 10 + 10 + 1 + 2  # the two refused records counted as one each
