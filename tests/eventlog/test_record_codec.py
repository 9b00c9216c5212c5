"""The C record codec (``driftloop.eventlog._recordcodec``) where it can differ from the Python
reference: damaged input, wrong types, and memory. ``test_kafka_codec`` holds both implementations to
kafka-python's bytes and records on valid input."""

from __future__ import annotations

import random
import time
import tracemalloc
from typing import Any

import kafka.errors as kerrors
import pytest
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_bulk, kafka_fetch
from driftloop.eventlog.base import Record

HEADER = 61  # the v2 batch header: records start here


class _Part:
    topic_partition = KafkaTP("t", 0)
    records_read = 0
    bytes_read = 0
    next_fetch_offset = 0


def _batch(n: int = 6, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    builder = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, batch_size=2**30)
    for i in range(n):
        headers = [(f"h{j}", rng.randbytes(rng.choice([0, 3, 130]))) for j in range(rng.choice([0, 1, 8]))]
        key = None if i % 3 == 0 else rng.randbytes(rng.choice([0, 5, 200]))
        stamp = 1_700_000_000_000 + rng.randint(-(10**6), 10**6)
        builder.append(i, stamp, key, rng.randbytes(i * 40), headers)
    return bytes(builder.build())


def _decode(raw: bytes, use_native: bool) -> list[Record]:
    part: Any = _Part()
    batch = DefaultRecordBatch(raw)  # no CRC check here: the damage is what is tested
    if use_native:
        return list(kafka_fetch.FastPartitionRecords._records_v2_native(part, batch, "t", 0))
    return list(kafka_fetch.FastPartitionRecords._records_v2(part, batch, "t", 0))


def _outcome(raw: bytes, use_native: bool) -> list[Record] | str:
    try:
        return _decode(raw, use_native)
    except (kerrors.CorruptRecordError, ValueError) as exc:  # ValueError: kafka-python's varint decoder
        return type(exc).__name__


@pytest.mark.parametrize("seed", range(4))
def test_damaged_batches_decode_as_the_python_reference_or_fail_as_corrupt(seed: int) -> None:
    """Flipped bytes, bytes set to 0xff (long varints) and truncations anywhere in the records: the C
    decoder returns what the Python one returns, or refuses the batch when the Python one does."""
    rng = random.Random(seed)
    good = _batch(8, seed)
    refused = 0
    for _ in range(400):
        raw = bytearray(good)
        how = rng.random()
        if how < 0.4:
            raw[rng.randrange(HEADER, len(raw))] ^= 1 << rng.randrange(8)
        elif how < 0.7:
            at = rng.randrange(HEADER, len(raw))
            raw[at : at + rng.randint(1, 12)] = b"\xff" * 12
        else:
            raw = raw[: rng.randrange(HEADER, len(raw))]
        ours, reference = _outcome(bytes(raw), True), _outcome(bytes(raw), False)
        if isinstance(reference, list):
            assert ours == reference
        else:
            assert ours in ("CorruptRecordError", "UnicodeDecodeError"), ours
            refused += 1
    assert refused > 100  # the damage was real


def test_a_varint_longer_than_64_bits_is_a_corrupt_record() -> None:
    raw = bytearray(_batch(1))
    raw[HEADER : HEADER + 11] = b"\xff" * 10 + b"\x01"  # the first record's length
    with pytest.raises(kerrors.CorruptRecordError, match="int64"):
        _decode(bytes(raw), True)


def _producer_batch() -> ProducerBatch:
    return ProducerBatch(KafkaTP("t", 0), MemoryRecordsBuilder(2, 0, 2**20), now=time.monotonic())


@pytest.mark.parametrize(
    ("records", "headers", "message"),
    [
        ([(b"k", b"v"), (b"k", None)], None, "a value must be bytes"),
        ([(b"k", b"v"), (7, b"v")], None, "a key must be bytes"),
        ([(b"k", b"v"), b"kv"], None, "a record must be a"),
        ([(b"k", b"v"), (b"k", b"v")], [[], [(b"name", b"v")]], "a header name must be str"),
        ([(b"k", b"v"), (b"k", b"v")], [[], [("name", 1.5)]], "a header value must be bytes"),
        ([(b"k", b"v"), (b"k", b"v")], [[], [("name",)]], "a header must be a"),
    ],
)
def test_the_encoder_refuses_what_is_not_bytes_and_writes_nothing(
    records: list[Any], headers: list[Any] | None, message: str
) -> None:
    batch = _producer_batch()
    kafka_bulk._append_native(batch, [(b"first", b"call")], 0, kafka_bulk._Extras(1, None, None), 0.0)
    before = bytes(batch.records._builder._buffer)
    with pytest.raises(TypeError, match=message):
        kafka_bulk._append_native(batch, records, 0, kafka_bulk._Extras(1, headers, None), 0.0)
    assert bytes(batch.records._builder._buffer) == before
    assert batch.records._builder._num_records == 1


def test_the_encoder_takes_any_bytes_like_value() -> None:
    ours, reference = _producer_batch(), _producer_batch()
    extras = kafka_bulk._Extras(5, [[("h", bytearray(b"hv"))]], None)
    kafka_bulk._append_native(ours, [(memoryview(b"key"), bytearray(b"value"))], 0, extras, 0.0)
    kafka_bulk._append_py(reference, [(memoryview(b"key"), bytearray(b"value"))], 0, extras, 0.0)
    assert bytes(ours.records._builder._buffer) == bytes(reference.records._builder._buffer)


def test_decoding_and_encoding_do_not_leak() -> None:
    """100 rounds of decoding (good and corrupt batches) and encoding after a warm-up: the memory
    Python allocates stays flat (a missed reference per record would grow it by megabytes)."""
    good = _batch(40, 3)
    corrupt = bytearray(good)
    corrupt[HEADER] += 2
    records = [(b"key-%d" % i, bytes(100)) for i in range(200)]
    headers = [[("type", b"io.seldon"), ("requestid", b"r-%d" % i)] for i in range(200)]

    def round_trip() -> None:
        assert len(_decode(good, True)) == 40
        with pytest.raises(kerrors.CorruptRecordError):
            _decode(bytes(corrupt), True)
        no_extras = kafka_bulk._Extras(1, None, None)
        with pytest.raises(TypeError):
            kafka_bulk._append_native(_producer_batch(), [(b"k", None)], 0, no_extras, 0.0)
        batch = _producer_batch()
        assert kafka_bulk._append_native(batch, records, 0, kafka_bulk._Extras(1, headers, None), 0.0) == 200

    for _ in range(20):
        round_trip()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(100):
            round_trip()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 256 * 1024, f"grew {end - start} bytes over 100 rounds"
