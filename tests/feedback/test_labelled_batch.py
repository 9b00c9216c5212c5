"""The labelled topic's batch record (``labelled_batch``): round trips, the JSON records still read,
corrupt records refused with a message, and the size cap."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict

import numpy as np
import orjson
import pytest
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.labelled_batch import (
    MAGIC,
    decode_columns,
    decode_labelled,
    encode_examples,
    encode_tuples,
    is_batch,
)
from driftloop_feedback.records import LabelledExample, UndecodableRecord


def regression(n: int, width: int = 3, start: int = 0) -> list[LabelledExample]:
    rng = np.random.default_rng(start)
    return [
        LabelledExample(
            f"req-{i}:{i % 3}",
            f"req-{i}",
            i % 3,
            tuple(rng.normal(size=width).tolist()),
            float(i) + 0.5,
            float(i),
            "main",
            str(1 + i % 2),
            1.7e9 + i,
            1.7e9 + i + 30.0,
            "request" if i % 4 else "asset",
            None if i % 4 else f"pump-{i}",
        )
        for i in range(start, start + n)
    ]


def test_regression_examples_round_trip_as_arrays() -> None:
    examples = regression(50)
    (value,) = encode_examples(examples)
    assert is_batch(value) and value.startswith(MAGIC)
    assert decode_labelled(value) == examples
    columns = decode_columns(value)
    assert columns.features.shape == (50, 3)  # type: ignore[union-attr]
    assert isinstance(columns.truth, np.ndarray) and isinstance(columns.prediction, np.ndarray)
    assert columns.truth.tolist() == [e.truth for e in examples]
    assert columns.row.tolist() == [e.row for e in examples]
    assert columns.asset_id == [e.asset_id for e in examples]


def test_classification_examples_round_trip_with_labels_probabilities_and_classes() -> None:
    examples = [
        LabelledExample("a:0", "a", 0, (1.0,), "hot", "ok", "m", "3", 1.0, 2.0, "request"),
        LabelledExample(
            "b:0", "b", 0, (2.0,), "ok", "ok", "m", "3", 1.0, 2.0, "request", None, (0.2, 0.8), ("hot", "ok")
        ),
        LabelledExample("c:0", "c", 0, (3.0,), 1.0, 2.0, "m", "3", 1.0, 2.0, "request", None, (0.5, 0.5)),
    ]
    (value,) = encode_examples(examples)
    assert decode_labelled(value) == examples


def test_rows_with_different_feature_counts_round_trip() -> None:
    examples = regression(2, width=3) + regression(2, width=5, start=2)
    (value,) = encode_examples(examples)
    assert decode_labelled(value) == examples
    assert isinstance(decode_columns(value).features, list)


def test_json_records_are_still_read_by_the_shared_decoder_and_the_deduper() -> None:
    examples = regression(6)
    old = [e.encode() for e in examples[:3]]
    new = encode_examples(examples[2:])  # examples[2] in both: a replay across the format change
    assert [decode_labelled(v) for v in old] == [[e] for e in examples[:3]]
    deduper = LabelledDeduper(window=100)
    assert list(deduper.feed([*old, *new])) == examples
    assert deduper.duplicates == 1


def _corrupt_versions(value: bytes) -> dict[str, bytes]:
    _, _, head = struct.unpack_from("<4sBI", value)
    header = orjson.loads(value[9 : 9 + head])
    short_ids = orjson.dumps({**header, "example_id": header["example_id"][:-1]})
    ints = orjson.dumps({**header, "endpoint": [1] * header["n"]})
    return {
        "truncated body": value[:-5],
        "truncated header": value[: 9 + head // 2],
        "truncated prefix": value[:6],
        "unknown version": value[:4] + bytes([9]) + value[5:],
        "header not JSON": value[:9] + b"x" * head + value[9 + head :],
        "a column too short": value[:5] + struct.pack("<I", len(short_ids)) + short_ids + value[9 + head :],
        "a column of numbers": value[:5] + struct.pack("<I", len(ints)) + ints + value[9 + head :],
    }


@pytest.mark.parametrize(
    "case",
    [
        "truncated body",
        "truncated header",
        "truncated prefix",
        "unknown version",
        "header not JSON",
        "a column too short",
        "a column of numbers",
    ],
)
def test_a_corrupt_batch_record_is_refused_with_a_message(case: str) -> None:
    (value,) = encode_examples(regression(5))
    bad = _corrupt_versions(value)[case]
    with pytest.raises(UndecodableRecord, match="labelled batch record"):
        decode_labelled(bad)
    with pytest.raises(UndecodableRecord):
        list(LabelledDeduper(10).feed([bad]))


def test_records_stay_under_the_row_and_byte_caps_in_order() -> None:
    examples = regression(300, width=40)
    values = encode_examples(examples, max_rows=128, max_bytes=20_000)
    assert len(values) > 3
    assert all(len(v) <= 20_000 for v in values)
    assert all(len(decode_columns(v)) <= 128 for v in values)
    assert [e for v in values for e in decode_labelled(v)] == examples
    default = encode_examples(regression(5000))  # the defaults: 2048 rows, 512 KiB
    assert [len(decode_columns(v)) for v in default] == [2048, 2048, 904]
    assert max(map(len, default)) <= 512 * 1024


def test_an_example_over_the_byte_cap_goes_alone() -> None:
    examples = [*regression(2), *regression(1, width=5000, start=2), *regression(2, start=3)]
    values = encode_tuples([tuple(e.__dict__.values()) for e in examples], max_bytes=10_000)
    sizes = [len(decode_columns(v)) for v in values]
    big = next(i for i, v in enumerate(values) if len(v) > 10_000)
    assert sizes[big] == 1 and decode_labelled(values[big]) == examples[2:3]
    assert sum(sizes) == 5 and [e for v in values for e in decode_labelled(v)] == examples


class _OneAtATime:
    """The deduper's rule, one id at a time (the reference ``first_seen`` must match)."""

    def __init__(self, window: int) -> None:
        self.window, self.seen, self.duplicates = window, OrderedDict[str, None](), 0

    def first_seen(self, ids: list[str]) -> list[bool]:
        out = []
        for i in ids:
            if i in self.seen:
                self.duplicates += 1
                out.append(False)
                continue
            self.seen[i] = None
            if len(self.seen) > self.window:
                self.seen.popitem(last=False)
            out.append(True)
        return out


@pytest.mark.parametrize("window", [1, 3, 10, 50])
def test_the_deduper_keeps_the_one_at_a_time_rule_on_any_batches_and_across_pickling(window: int) -> None:
    rng = np.random.default_rng(window)
    deduper, reference = LabelledDeduper(window), _OneAtATime(window)
    for step in range(200):
        pool = 30 if step % 3 else 10_000  # some batches repeat ids, some are (nearly) all new
        ids = [f"id{i}" for i in rng.integers(pool, size=int(rng.integers(0, 70)))]
        assert deduper.first_seen(ids) == reference.first_seen(ids)
        assert list(deduper._order) == list(reference.seen) and deduper.duplicates == reference.duplicates
        if step % 50 == 0:
            deduper = pickle.loads(pickle.dumps(deduper))


def test_a_deduper_pickled_before_its_compact_state_is_restored() -> None:
    old = LabelledDeduper.__new__(LabelledDeduper)
    old.__setstate__({"window": 3, "duplicates": 2, "_seen": OrderedDict.fromkeys(["a", "b", "c"])})
    assert old.first_seen(["c", "d", "a"]) == [False, True, True]
    assert old.duplicates == 3
