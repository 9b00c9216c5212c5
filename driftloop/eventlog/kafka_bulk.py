"""Many records to one Kafka partition in one call, without kafka-python's per-record work.

``kafka.KafkaProducer.send`` costs ~10 us of Python per record (argument checks, partitioner, size
estimate, one accumulator lock, one record encoding, one future chained to the batch's future). For a
producer that emits 100k+ small records per second (the joiner's labelled examples) that is most of
its time. ``append_bulk`` does the same job for a list of (key, value) records bound for one
partition: it takes the partition's accumulator lock once, encodes the records straight into the open
batch's buffer (record format v2, exactly what ``DefaultRecordBatchBuilder.append`` writes; in C where
``record_codec`` is built, else in Python: ``_append_py``, the reference), opens new batches as
kafka-python does, and watches each batch with one callback instead of one future per record. Batches
are then drained, sequenced (idempotence), sent, retried and acknowledged by kafka-python's own
sender, and ``KafkaProducer.flush`` waits for them like for any other batch.

This reaches into kafka-python's producer internals (``RecordAccumulator``, ``ProducerBatch``,
``DefaultRecordBatchBuilder``), which is why ``supported`` checks the pinned version's shapes first;
where they differ, callers fall back to ``send`` per record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import kafka
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import encode_varint
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog.record_codec import native

BulkRecord = tuple[bytes | None, bytes]  # (key, value)
Header = tuple[str, bytes]


def _varint_slow(value: int) -> bytes:
    out = bytearray()
    encode_varint(value, out.append)
    return bytes(out)


_SMALL = [_varint_slow(i) for i in range(1 << 12)]  # zig-zag varints of 0..4095, the common sizes


def supported(producer: kafka.KafkaProducer) -> bool:
    """Whether this kafka-python producer has the internals ``append_bulk`` relies on."""
    acc = getattr(producer, "_accumulator", None)
    return (
        acc is not None
        and acc.config.get("message_version") == 2
        and hasattr(acc, "_tp_lock")
        and hasattr(acc, "_batches")
        and hasattr(acc, "_incomplete")
        and hasattr(acc, "_appends_in_progress")
        and hasattr(producer, "_sender")
        and "_buffer" in DefaultRecordBatchBuilder.__slots__
    )


class BatchWatch:
    """Stands in for the per-record futures of the records one ``append_bulk`` call put in a batch.

    It is listed once per record in the batch's future list, so kafka-python's split of an oversized
    batch rebinds it like a record future; it then watches the new batches' futures. When a batch's
    future completes it reports the records acknowledged, or failed with the batch's error.
    """

    __slots__ = ("_counts", "_lock", "_on_done", "_topic")

    def __init__(self, topic: str, on_done: Callable[[str, int, BaseException | None], None]) -> None:
        self._topic = topic
        self._on_done = on_done
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def bind(self, produce_future: Any, records: int) -> None:
        with self._lock:
            key = id(produce_future)
            known = key in self._counts
            self._counts[key] = self._counts.get(key, 0) + records
        if not known:
            produce_future.add_callback(self._done, key)

    def rebind(self, new_produce_future: Any, new_batch_index: int) -> None:  # called by a batch split
        self.bind(new_produce_future, 1)

    def _done(self, key: int, result: tuple[int, int, Any]) -> None:
        with self._lock:
            records = self._counts.pop(key, 0)
        _offset, _timestamp, record_errors = result
        error = None if record_errors is None else record_errors(0)
        self._on_done(self._topic, records, error)


def append_bulk(
    producer: kafka.KafkaProducer,
    topic: str,
    partition: int,
    records: Sequence[BulkRecord],
    watch: BatchWatch,
    *,
    headers: Sequence[Sequence[Header]] | None = None,
    timestamps_ms: Sequence[int | None] | None = None,
) -> None:
    """Queue ``records`` (keys and values as bytes) for ``topic``/``partition``; ``headers`` and
    ``timestamps_ms``, when given, run parallel to ``records`` (a timestamp of None means now)."""
    acc = producer._accumulator
    tp = KafkaTP(topic, partition)
    now = time.monotonic()
    extras = _Extras(int(time.time() * 1000), headers, timestamps_ms)
    wake = False
    acc._appends_in_progress.increment()
    try:
        with acc._tp_lock(tp):
            if acc._closed:
                raise kafka.errors.IllegalStateError("RecordAccumulator is closed")
            dq = acc._batches[tp]
            start, n = 0, len(records)
            while start < n:
                taken = _append(dq[-1], records, start, extras, now) if dq else 0
                batch = dq[-1] if taken else None
                if batch is None:  # no open batch, or it is full: open one as the accumulator does
                    builder = MemoryRecordsBuilder(
                        acc.config["message_version"],
                        acc.config["compression_attrs"],
                        acc.config["batch_size"],
                    )
                    batch = ProducerBatch(tp, builder, now=now)
                    dq.append(batch)
                    acc._incomplete.add(batch)
                    wake = True
                    taken = _append(batch, records, start, extras, now)
                watch.bind(batch.produce_future, taken)
                batch._record_futures.extend([watch] * taken)
                start += taken
            wake = wake or len(dq) > 1 or dq[-1].records.is_full()
    finally:
        acc._appends_in_progress.decrement()
    if wake:
        producer._sender.wakeup()


class _Extras:
    """Per-record timestamps and headers of one ``append_bulk`` call (both optional)."""

    __slots__ = ("headers", "now_ms", "timestamps")

    def __init__(
        self,
        now_ms: int,
        headers: Sequence[Sequence[Header]] | None,
        timestamps: Sequence[int | None] | None,
    ) -> None:
        self.now_ms = now_ms
        self.headers = headers
        self.timestamps = timestamps

    def timestamp(self, i: int) -> int:
        t = None if self.timestamps is None else self.timestamps[i]
        return self.now_ms if t is None else t

    def encoded_headers(self, i: int) -> bytes:
        """Record ``i``'s header count and headers, as the record format writes them."""
        if self.headers is None:
            return b"\x00"
        items = self.headers[i]
        if not items:
            return b"\x00"
        small, names = _SMALL, _HEADER_NAMES
        count = len(items)
        parts = [small[count] if count < 4096 else _varint_slow(count)]
        for name, value in items:
            raw = names.get(name)
            if raw is None:
                raw = _header_name(name)
            n, v = len(raw), len(value)
            parts += (
                small[n] if n < 4096 else _varint_slow(n),
                raw,
                small[v] if v < 4096 else _varint_slow(v),
                value,
            )
        return b"".join(parts)


_HEADER_NAMES: dict[str, bytes] = {}  # header names seen, encoded once (at most 1024 kept)


def _header_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(_HEADER_NAMES) < 1024:
        _HEADER_NAMES[name] = raw
    return raw


def _append_native(
    batch: ProducerBatch, records: Sequence[BulkRecord], start: int, extras: _Extras, now: float
) -> int:
    """``_append_py`` by the C codec (``record_codec``): the same bytes, the same batch bookkeeping."""
    assert native is not None
    mrb = batch.records
    if mrb._closed:
        return 0
    b = mrb._builder
    if b._first_timestamp is None:
        b._first_timestamp = b._max_timestamp = extras.timestamp(start)
    offset = mrb._next_offset
    taken, max_ts, biggest = native.encode_v2(
        b._buffer,
        records,
        start,
        b._batch_size - len(b._buffer),
        b._num_records == 0,
        offset,
        b._first_timestamp,
        b._max_timestamp,
        extras.now_ms,
        extras.headers,
        extras.timestamps,
    )
    if taken:
        b._max_timestamp = max_ts
        b._num_records += taken
        b._last_offset = offset + taken - 1
        mrb._next_offset = offset + taken
        batch.last_append = now
        batch.max_record_size = max(batch.max_record_size, biggest)
    return taken


def _append_py(
    batch: ProducerBatch, records: Sequence[BulkRecord], start: int, extras: _Extras, now: float
) -> int:
    """Encode records from ``start`` into the batch while they fit (the bytes
    ``DefaultRecordBatchBuilder.append`` writes); returns how many. A new, empty batch always takes at
    least one, as kafka-python's builder does."""
    mrb = batch.records
    if mrb._closed:
        return 0
    b = mrb._builder
    buf = b._buffer
    room = b._batch_size - len(buf)  # bytes left in the batch
    headers, stamps = extras.headers, extras.timestamps
    if b._first_timestamp is None:
        b._first_timestamp = b._max_timestamp = extras.timestamp(start)
    first_ts = b._first_timestamp
    max_ts = b._max_timestamp
    ts = extras.now_ms
    ts_delta = _zz(ts - first_ts)
    hdr = b"\x00"  # no headers: a count of 0
    offset = mrb._next_offset
    first = b._num_records == 0
    biggest = 0
    small = _SMALL
    slow = _varint_slow
    encode_headers = extras.encoded_headers
    i, n = start, len(records)
    parts: list[bytes] = []  # every record's pieces, joined onto the buffer once
    extend = parts.extend
    while i < n:
        key, value = records[i]
        if stamps is not None:
            stamp = stamps[i]
            ts = extras.now_ms if stamp is None else stamp
            d = ts - first_ts
            ts_delta = small[d] if 0 <= d < 4096 else slow(d)
        if headers is not None:
            hdr = encode_headers(i)
        offset_z = small[offset] if offset < 4096 else slow(offset)
        vlen = len(value)
        value_z = small[vlen] if vlen < 4096 else slow(vlen)
        if key is None:
            key = b""
            key_z = b"\x01"  # zig-zag -1: a null key
        else:
            klen = len(key)
            key_z = small[klen] if klen < 4096 else slow(klen)
        size = 1 + len(ts_delta) + len(offset_z) + len(key_z) + len(key) + len(value_z) + vlen + len(hdr)
        length = small[size] if size < 4096 else slow(size)
        room -= size + len(length)
        if room < 0 and not first:
            break
        first = False
        # length, attributes (0), timestamp delta, offset delta, key, value, header count + headers
        extend((length, b"\x00", ts_delta, offset_z, key_z, key, value_z, value, hdr))
        if size > biggest:
            biggest = size
        if ts > max_ts:
            max_ts = ts
        offset += 1
        i += 1
    taken = i - start
    if taken:
        buf += b"".join(parts)
        b._max_timestamp = max_ts
        b._num_records += taken
        b._last_offset = offset - 1
        mrb._next_offset = offset
        batch.last_append = now
        batch.max_record_size = max(batch.max_record_size, biggest)
    return taken


_append = _append_py if native is None else _append_native


def _zz(value: int, small: list[bytes] = _SMALL) -> bytes:
    """Kafka's zig-zag varint of a signed int (``encode_varint`` zig-zags itself)."""
    return small[value] if 0 <= value < 4096 else _varint_slow(value)
