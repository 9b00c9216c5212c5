"""driftloop's own Kafka record batch v2 decoder (``kafka_fetch``) and encoder (``kafka_bulk``) against
kafka-python's ``DefaultRecordBatchBuilder`` and ``DefaultRecordBatch``, byte for byte, on random
records: null and empty keys and values, values across the one-, two- and three-byte varint lengths,
negative timestamp deltas, no / many headers. Every test runs on both implementations: the C codec
(``record_codec``) and the Python reference."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kafka.errors as kerrors
import pytest
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_bulk, kafka_fetch, record_codec
from driftloop.eventlog.base import Record


class _PythonPartitionRecords(kafka_fetch.FastPartitionRecords):
    native = False


@dataclass(frozen=True)
class Codec:
    """One implementation of the codec: the fetch decoder class and the bulk encoder."""

    decoder: type[kafka_fetch.FastPartitionRecords]
    append: Callable[..., int]

    def decode_batch(self, batch: DefaultRecordBatch) -> list[Record]:
        counters: Any = _Counters()
        if self.decoder.native:
            return list(kafka_fetch.FastPartitionRecords._records_v2_native(counters, batch, "t", 0))
        return list(kafka_fetch.FastPartitionRecords._records_v2(counters, batch, "t", 0))


@pytest.fixture(params=["native", "python"])
def codec(request: pytest.FixtureRequest) -> Codec:
    if request.param == "native":
        return Codec(kafka_fetch.FastPartitionRecords, kafka_bulk._append_native)
    return Codec(_PythonPartitionRecords, kafka_bulk._append_py)


def test_the_c_codec_is_built_and_used() -> None:
    """``make setup`` builds it (hatch_build.py): the fast paths must not fall back silently."""
    assert record_codec.NATIVE
    assert kafka_fetch.FastPartitionRecords.native
    assert kafka_bulk._append is kafka_bulk._append_native


Raw = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]  # timestamp, key, value, headers

SIZES = [0, 1, 63, 64, 127, 128, 8191, 8192, 16383, 16384, 70_000]


def _blob(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def _random_records(rng: random.Random, n: int, *, null_values: bool = True) -> list[Raw]:
    out: list[Raw] = []
    base = 1_700_000_000_000
    for i in range(n):
        ts = base + rng.choice([0, 1, -1, -5000, 63, 64, 10**6, -(10**6), i])
        key = None if rng.random() < 0.2 else _blob(rng, rng.choice([*SIZES[:6], rng.randint(0, 300)]))
        if null_values and rng.random() < 0.1:
            value = None
        else:
            value = _blob(rng, rng.choice([*SIZES, rng.randint(0, 600)]))
        headers: list[tuple[str, bytes | None]] = []
        count = rng.choice([0, 0, 1, 8, 70])
        for h in range(count):
            name = rng.choice(["", "ce-type", "ce-requestid", "naïve-ü", "x" * 200, f"h{h}"])
            raw = None if rng.random() < 0.1 else _blob(rng, rng.choice([0, 5, 64, 200]))
            headers.append((name, raw))
        out.append((ts, key, value, headers))
    return out


def _build(records: Sequence[Raw], base_offset: int = 0, offsets: Sequence[int] | None = None) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=2**30,
    )
    for i, (ts, key, value, headers) in enumerate(records):
        builder.append(i if offsets is None else offsets[i], ts, key, value, headers)
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big", signed=True)  # not covered by the CRC
    return bytes(raw)


def _expected(raw: bytes, topic: str = "t", partition: int = 3) -> list[Record]:
    out = []
    for batch in MemoryRecords(raw):
        assert isinstance(batch, DefaultRecordBatch)
        for r in batch:
            headers = tuple((n, b"" if v is None else bytes(v)) for n, v in r.headers)
            value = b"" if r.value is None else bytes(r.value)
            key = None if r.key is None else bytes(r.key)
            out.append(Record(topic, partition, r.offset, r.timestamp, key, value, headers))
    return out


def _fast(
    codec: Codec, raw: bytes, fetch_offset: int = 0, take: int | None = None
) -> tuple[list[Record], Any]:
    part = codec.decoder(fetch_offset, KafkaTP("t", 3), MemoryRecords(raw))
    records: list[Record] = []
    while part:
        got = part.take(take)
        if not got:
            break
        records.extend(got)
    return records, part


@pytest.mark.parametrize("seed", range(6))
def test_fetch_decoder_matches_kafka_python(seed: int, codec: Codec) -> None:
    rng = random.Random(seed)
    raw = b"".join(
        _build(_random_records(rng, rng.randint(1, 40)), base_offset=off) for off in (0, 1000, 2**33)
    )
    expected = _expected(raw)
    got, part = _fast(codec, raw)
    assert got == expected
    assert all(type(r) is Record for r in got)
    assert all(type(r.key) in (bytes, type(None)) and type(r.value) is bytes for r in got)
    assert part.records_read == len(expected)
    assert part.next_fetch_offset == expected[-1].offset + 1


def test_fetch_decoder_positions_when_taken_in_small_steps(codec: Codec) -> None:
    rng = random.Random(42)
    raw = _build(_random_records(rng, 30, null_values=False))
    part = codec.decoder(0, KafkaTP("t", 3), MemoryRecords(raw))
    seen: list[Record] = []
    for _ in range(10):
        got = part.take(3)
        seen.extend(got)
        assert part.next_fetch_offset == seen[-1].offset + 1
    assert seen == _expected(raw)[:30]


def test_fetch_decoder_skips_records_before_the_fetch_offset_and_keeps_offset_gaps(codec: Codec) -> None:
    rng = random.Random(7)
    records = _random_records(rng, 10)
    raw = _build(records, base_offset=100, offsets=[0, 1, 2, 5, 6, 7, 9, 10, 11, 14])  # compacted
    got, _part = _fast(codec, raw, fetch_offset=106)
    assert got == [r for r in _expected(raw) if r.offset >= 106]
    assert [r.offset for r in got] == [106, 107, 109, 110, 111, 114]


def test_fetch_decoder_refuses_a_record_whose_length_does_not_match(codec: Codec) -> None:
    raw = bytearray(_build([(1, b"k", b"value", [])]))
    header = 61  # record batch v2 header size: the first record's length varint follows
    assert raw[header] == 2 * (len(raw) - header - 1)
    raw[header] += 2  # claims one byte more than the record has
    batch = DefaultRecordBatch(raw)
    with pytest.raises(kerrors.CorruptRecordError, match="Invalid record size"):
        codec.decode_batch(batch)


def test_fetch_decoder_refuses_a_corrupt_crc(codec: Codec) -> None:
    raw = bytearray(_build([(1, b"k", b"value", [("h", b"v")])]))
    raw[-1] ^= 0xFF
    with pytest.raises(kerrors.CorruptRecordError, match="crc"):
        _fast(codec, bytes(raw))


class _Counters:
    topic_partition = KafkaTP("t", 0)
    records_read = 0
    bytes_read = 0
    next_fetch_offset = 0


def _bulk_batch(
    codec: Codec,
    records: Sequence[tuple[bytes | None, bytes]],
    headers: Sequence[Sequence[tuple[str, bytes]]] | None,
    stamps: Sequence[int | None] | None,
    now_ms: int,
    batch_size: int = 2**30,
) -> tuple[bytes, int]:
    builder = MemoryRecordsBuilder(2, 0, batch_size)
    batch = ProducerBatch(KafkaTP("t", 0), builder, now=time.monotonic())
    extras = kafka_bulk._Extras(now_ms, headers, stamps)
    taken = codec.append(batch, records, 0, extras, time.monotonic())
    return bytes(builder._builder._buffer), taken


def _builder_bytes(records: Sequence[Raw]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=2**30,
    )
    for i, (ts, key, value, hdrs) in enumerate(records):
        builder.append(i, ts, key, value, hdrs)
    return bytes(builder._buffer)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_headers", [False, True])
@pytest.mark.parametrize("with_stamps", [False, True])
def test_bulk_encoder_writes_kafka_pythons_bytes(
    seed: int, with_headers: bool, with_stamps: bool, codec: Codec
) -> None:
    rng = random.Random(seed)
    raws = _random_records(rng, 60, null_values=False)
    now_ms = 1_700_000_000_000
    records = [(key, value or b"") for _ts, key, value, _h in raws]
    headers = [[(n, v or b"") for n, v in hdrs] for _ts, _k, _v, hdrs in raws] if with_headers else None
    stamps: list[int | None] | None = None
    if with_stamps:
        stamps = [None if i % 7 == 3 else ts for i, (ts, _k, _v, _h) in enumerate(raws)]
    got, taken = _bulk_batch(codec, records, headers, stamps, now_ms)
    assert taken == len(records)
    expected = [
        (
            now_ms if stamps is None or stamps[i] is None else stamps[i],
            key,
            value,
            [] if headers is None else headers[i],
        )
        for i, (key, value) in enumerate(records)
    ]
    assert got == _builder_bytes(expected)  # type: ignore[arg-type]


def test_bulk_encoder_stops_at_the_batch_size_but_always_takes_one(codec: Codec) -> None:
    records = [(b"k%d" % i, bytes(300)) for i in range(100)]
    got, taken = _bulk_batch(codec, records, None, None, 1, batch_size=4096)
    assert 1 < taken < 100
    assert len(got) <= 4096
    _got, taken = _bulk_batch(codec, [(None, bytes(10_000))], None, None, 1, batch_size=4096)
    assert taken == 1


def test_bulk_encoded_batches_decode_back(codec: Codec) -> None:
    rng = random.Random(9)
    raws = _random_records(rng, 50, null_values=False)
    records = [(key, value or b"") for _ts, key, value, _h in raws]
    headers = [[(n, v or b"") for n, v in hdrs] for _ts, _k, _v, hdrs in raws]
    stamps: list[int | None] = [ts for ts, _k, _v, _h in raws]
    builder = MemoryRecordsBuilder(2, 0, 2**30)
    batch = ProducerBatch(KafkaTP("t", 3), builder, now=time.monotonic())
    codec.append(batch, records, 0, kafka_bulk._Extras(0, headers, stamps), time.monotonic())
    builder.close()
    got, _part = _fast(codec, bytes(builder.buffer()))
    assert [(r.offset, r.timestamp_ms, r.key, r.value, r.headers) for r in got] == [
        (i, stamps[i], key, value, tuple(headers[i])) for i, (key, value) in enumerate(records)
    ]


def test_fetch_decoder_refuses_a_batch_that_ends_inside_a_record(codec: Codec) -> None:
    raw = _build([(1, b"k", b"value" * 30, [("h", b"v")])])
    batch = DefaultRecordBatch(raw[:-20])
    with pytest.raises(kerrors.CorruptRecordError, match="ends inside a record"):
        codec.decode_batch(batch)


@pytest.mark.parametrize("steps", [[None], [1, 2, 3, 500, None], [7] * 40, [40, 1, 40, 1, 200]])
@pytest.mark.parametrize("fetch_offset", [0, 1005, 2003])
def test_take_follows_kafka_pythons_partition_records(
    steps: list[int | None], fetch_offset: int, codec: Codec
) -> None:
    """The same records and the same ``next_fetch_offset`` and drained state after every ``take`` as
    kafka-python's own ``PartitionRecords``, over several batches with offset gaps (compaction)."""
    rng = random.Random(fetch_offset)
    raw = b"".join(
        [
            _build(_random_records(rng, 30, null_values=False), base_offset=1000),
            _build(_random_records(rng, 4), base_offset=2000, offsets=[0, 2, 3, 9]),  # ends at 2009
            _build(_random_records(rng, 25), base_offset=2010),
        ]
    )
    ours = codec.decoder(fetch_offset, KafkaTP("t", 3), MemoryRecords(raw))
    theirs = kafka_fetch._PartitionRecords(fetch_offset, KafkaTP("t", 3), MemoryRecords(raw))
    for n in steps:
        if not theirs:  # drained: the fetcher takes no more
            break
        got, expected = ours.take(n), theirs.take(n)
        assert [r.offset for r in got] == [r.offset for r in expected]
        assert [(r.key, r.value) for r in got] == [(r.key, r.value or b"") for r in expected]
        assert ours.next_fetch_offset == theirs.next_fetch_offset
        assert bool(ours) == bool(theirs)
        assert (ours.records_read, ours.bytes_read) == (theirs.records_read, theirs.bytes_read) or bool(ours)
    while theirs:
        if not theirs.take(None):
            break
    while ours:
        if not ours.take(None):
            break
    assert ours.next_fetch_offset == theirs.next_fetch_offset == 2035
    assert not ours and not theirs


def test_take_returns_the_records_before_a_corrupt_one_then_raises(codec: Codec) -> None:
    good = _build([(1, b"k", b"v", []), (2, b"k", b"w", [])], base_offset=0)
    bad = bytearray(_build([(1, b"k", b"x", []), (2, b"k", b"y", [])], base_offset=2))
    bad[-1] ^= 0xFF
    part = codec.decoder(0, KafkaTP("t", 3), MemoryRecords(good + bytes(bad)))
    assert [r.value for r in part.take(10)] == [b"v", b"w"]
    assert part.next_fetch_offset == 2
    with pytest.raises(kerrors.CorruptRecordError):
        part.take(10)
