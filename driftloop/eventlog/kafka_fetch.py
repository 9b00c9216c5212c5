"""Decoding fetched record batches straight into driftloop ``Record``s, for driftloop's own consumers.

kafka-python turns each fetched record into a ``DefaultRecord`` (seven varints through a generic
decoder), then a ``ConsumerRecord`` (deserializers, size sums), which ``KafkaConsumer.poll`` then copied
into a ``Record``: ~8 us of Python per record, most of a busy consumer's time. ``FastPartitionRecords``
replaces kafka-python's per-record loop, for message format v2 batches, with one that reads the record
fields (the same bytes, the same checks: batch CRC, record length, control batches skipped) and builds
the ``Record`` directly: in C (``record_codec``) where it is built, else in Python
(``_records_v2``, the reference). Everything around it stays kafka-python's: fetch requests, positions, the
``max_records`` cut, pause/resume, offset resets. It applies only to consumers without deserializers
and with ``read_uncommitted`` isolation (what driftloop uses); anything else takes kafka-python's path.

It is installed per consumer instance (``install``), never on kafka-python's classes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import kafka.errors as kerrors
from kafka.consumer.fetcher import Fetcher
from kafka.net.transport import KafkaTCPTransport
from kafka.record.default_records import DefaultRecordBatch
from kafka.record.util import decode_varint

from driftloop.eventlog.base import Record
from driftloop.eventlog.record_codec import NATIVE, native

_PartitionRecords: Any = Fetcher.PartitionRecords


def supported(consumer: Any) -> bool:
    fetcher = getattr(consumer, "_fetcher", None)
    return (
        fetcher is not None
        and fetcher.config.get("key_deserializer") is None
        and fetcher.config.get("value_deserializer") is None
        and consumer.config.get("isolation_level") == "read_uncommitted"
        and hasattr(_PartitionRecords, "_unpack_records")
        and hasattr(DefaultRecordBatch, "_maybe_uncompress")
    )


def install(consumer: Any) -> bool:
    """Make this kafka-python consumer decode its fetches with ``FastPartitionRecords``, and read its
    sockets in large chunks (``install_large_reads``)."""
    if not supported(consumer):
        return False
    consumer._fetcher.PartitionRecords = FastPartitionRecords
    install_large_reads(consumer)
    return True


RECV_BYTES = 1 << 20


def install_large_reads(consumer: Any) -> bool:
    """Have this consumer's plain-TCP connections read up to ``RECV_BYTES`` per ``recv`` rather than
    kafka-python's 4 KiB. A fetch response is megabytes: its IO thread took the GIL back after every
    4 KiB ``recv`` (hundreds of times per fetch), each time waiting for a busy thread (the joiner's) to
    let go of it. The bytes handed to the protocol are the same. Connections made from now on, and
    those already open; TLS connections keep kafka-python's reads."""
    manager: Any = getattr(getattr(consumer, "_client", None), "_manager", None)
    build = getattr(manager, "_build_transport", None)
    if build is None or not hasattr(KafkaTCPTransport, "_sock_recv"):
        return False

    async def build_transport(node: Any, timeout_at: Any = None) -> Any:
        transport = await build(node, timeout_at=timeout_at)
        _large_reads(transport)
        return transport

    manager._build_transport = build_transport
    for conn in list(getattr(manager, "_conns", {}).values()):
        if getattr(conn, "transport", None) is not None:
            _large_reads(conn.transport)
    return True


def _large_reads(transport: Any) -> None:
    if type(transport) is KafkaTCPTransport:
        transport._sock_recv = functools.partial(_sock_recv, transport)


def _sock_recv(transport: Any) -> tuple[bytes, Exception | None]:
    """``KafkaTCPTransport._sock_recv`` (kafka-python 3.0) with ``RECV_BYTES`` reads."""
    recvd: list[bytes] = []
    err: Exception | None = None
    while True:
        try:
            data = transport._sock.recv(RECV_BYTES)
            if not data:
                err = kerrors.KafkaConnectionError("socket disconnected")
                break
            recvd.append(data)
        except (BlockingIOError, InterruptedError):
            break
        except BaseException as exc:  # as kafka-python: the connection is closed with this error
            err = kerrors.KafkaConnectionError(exc)
            break
    return b"".join(recvd), err


def _varint(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    """Kafka's zig-zag varint at ``pos``: (value, next position); one- and two-byte forms inline."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    b2 = buf[pos + 1]
    if b2 < 0x80:
        v = (b & 0x7F) | (b2 << 7)
        return (v >> 1) ^ -(v & 1), pos + 2
    value: int
    value, pos = decode_varint(buf, pos)
    return value, pos


# Zig-zag values of the one-byte varints (0x00-0x7f): most lengths, deltas and counts of a record.
_ZZ1 = tuple((b >> 1) ^ -(b & 1) for b in range(0x80))
_HEADER_NAMES: dict[bytes, str] = {}  # header names seen, decoded once (bounded: see _header_name)


def _header_name(raw: bytes) -> str:
    name = raw.decode("utf-8")
    if len(_HEADER_NAMES) < 1024:
        _HEADER_NAMES[raw] = name
    return name


def _headers_v2(buf: bytes, pos: int, names: dict[bytes, str]) -> tuple[tuple[tuple[str, bytes], ...], int]:
    """A record's headers at ``pos`` (count, then name/value pairs): (headers, next position).
    One-byte sizes inline; names decoded once per distinct name."""
    zz1 = _ZZ1
    b = buf[pos]
    if b < 0x80:
        count = zz1[b]
        pos += 1
    else:
        count, pos = _varint(buf, pos)
    if count < 0:
        raise kerrors.CorruptRecordError(f"Found invalid number of record headers {count}")
    items: list[tuple[str, bytes]] = []
    append = items.append
    for _h in range(count):
        b = buf[pos]
        if b < 0x80:
            size = zz1[b]
            pos += 1
        else:
            size, pos = _varint(buf, pos)
        if size < 0:
            raise kerrors.CorruptRecordError(f"Invalid negative header key size {size}")
        end = pos + size
        raw_name = buf[pos:end]
        try:
            name = names[raw_name]
        except KeyError:
            name = _header_name(raw_name)
        b = buf[end]
        if b < 0x80:
            size = zz1[b]
            pos = end + 1
        else:
            size, pos = _varint(buf, end)
        if size >= 0:
            end = pos + size
            append((name, buf[pos:end]))
            pos = end
        else:
            append((name, b""))
    return tuple(items), pos


class FastPartitionRecords(_PartitionRecords):
    native = NATIVE  # decode v2 batches in C (``_records_v2_native``), else in Python (``_records_v2``)

    def _unpack_records(
        self, tp: Any, records: Any, key_deserializer: Any, value_deserializer: Any
    ) -> Iterator[Any]:
        if key_deserializer is not None or value_deserializer is not None:
            yield from super()._unpack_records(tp, records, key_deserializer, value_deserializer)
            return
        topic, partition = tp.topic, tp.partition
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise kerrors.CorruptRecordError(
                        f"Record batch for partition {self.topic_partition} at offset "
                        f"{batch.base_offset} failed crc check"
                    )
                if batch.magic == 2:
                    self.leader_epoch = batch.leader_epoch
                    if batch.is_control_batch:  # transaction markers are not returned to consumers
                        self.next_fetch_offset = batch.next_offset
                        batch = records.next_batch()
                        continue
                    if self.native:
                        yield from self._records_v2_native(batch, topic, partition)
                    else:
                        yield from self._records_v2(batch, topic, partition)
                else:
                    yield from self._records_legacy(batch, topic, partition)
                batch = records.next_batch()
            else:
                # v2 keeps the last offset of a batch even if compaction removed that record: resume
                # after it, so the same batch is not fetched again.
                if last_batch is not None and last_batch.magic == 2:
                    self.next_fetch_offset = last_batch.next_offset
                self.drain()
        except StopIteration as exc:  # a StopIteration would end this generator silently
            raise RuntimeError("StopIteration raised unpacking messageset") from exc

    def _records_v2_native(self, batch: Any, topic: str, partition: int) -> Iterator[Record]:
        """``_records_v2`` by the C codec: the whole batch decoded in one call (a corrupt record
        fails the batch before any of its records is returned), then handed out one by one."""
        assert native is not None
        batch._maybe_uncompress()
        try:
            records, end, consumed = native.decode_v2(
                batch._buffer,
                batch._pos,
                batch.records_count,
                batch.base_offset,
                topic,
                partition,
                batch.first_timestamp,
                batch.max_timestamp,
                batch.timestamp_type == batch.LOG_APPEND_TIME,
                Record,
            )
        except native.CorruptRecord as exc:
            raise kerrors.CorruptRecordError(
                f"Record batch for partition {self.topic_partition} at offset {batch.base_offset}: {exc}"
            ) from exc
        batch._pos = end
        self.bytes_read += consumed
        read = 0
        try:
            for record in records:
                self.next_fetch_offset = record[2] + 1
                read += 1
                yield record
        finally:  # also when the consumer stops taking records half-way through the batch
            self.records_read += read

    def _records_v2(self, batch: Any, topic: str, partition: int) -> Iterator[Record]:
        """The batch's records, decoded inline: one- and two-byte varints (nearly all of them) by
        table and arithmetic, longer ones by ``decode_varint``; keys and values sliced from one
        ``bytes`` copy of the batch."""
        batch._maybe_uncompress()
        buf = bytes(batch._buffer)
        pos = batch._pos
        size_of_buf = len(buf)
        base_offset = batch.base_offset
        log_append_time = batch.timestamp_type == batch.LOG_APPEND_TIME
        first_ts, max_ts = batch.first_timestamp, batch.max_timestamp
        zz1 = _ZZ1
        varint = _varint
        names = _HEADER_NAMES
        new = tuple.__new__
        no_headers: tuple[tuple[str, bytes], ...] = ()
        read = consumed = 0
        try:
            for _ in range(batch.records_count):
                # length
                b = buf[pos]
                if b < 0x80:
                    length = zz1[b]
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    v = (b & 0x7F) | (buf[pos + 1] << 7)
                    length = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    length, pos = varint(buf, pos)
                start = pos
                # attributes (int8, unused in v2 records), then the timestamp delta
                b = buf[pos + 1]
                if b < 0x80:
                    ts_delta = zz1[b]
                    pos += 2
                elif buf[pos + 2] < 0x80:
                    v = (b & 0x7F) | (buf[pos + 2] << 7)
                    ts_delta = (v >> 1) ^ -(v & 1)
                    pos += 3
                else:
                    ts_delta, pos = varint(buf, pos + 1)
                # offset delta
                b = buf[pos]
                if b < 0x80:
                    offset_delta = zz1[b]
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    v = (b & 0x7F) | (buf[pos + 1] << 7)
                    offset_delta = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    offset_delta, pos = varint(buf, pos)
                # key
                b = buf[pos]
                if b < 0x80:
                    size = zz1[b]
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    v = (b & 0x7F) | (buf[pos + 1] << 7)
                    size = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    size, pos = varint(buf, pos)
                key = None
                if size >= 0:
                    key = buf[pos : pos + size]
                    pos += size
                # value
                b = buf[pos]
                if b < 0x80:
                    size = zz1[b]
                    pos += 1
                elif buf[pos + 1] < 0x80:
                    v = (b & 0x7F) | (buf[pos + 1] << 7)
                    size = (v >> 1) ^ -(v & 1)
                    pos += 2
                else:
                    size, pos = varint(buf, pos)
                value = b""
                if size >= 0:
                    value = buf[pos : pos + size]
                    pos += size
                # headers
                b = buf[pos]
                if b == 0:
                    pos += 1
                    headers = no_headers
                else:
                    headers, pos = _headers_v2(buf, pos, names)
                if pos > size_of_buf:  # a slice ran past the end: only the last header value can
                    raise IndexError  # without a read failing first (it would come back short)
                if pos - start != length:
                    raise kerrors.CorruptRecordError(
                        f"Invalid record size: expected to read {length} bytes in record payload, "
                        f"but instead read {pos - start}"
                    )
                offset = base_offset + offset_delta
                read += 1
                consumed += length
                self.next_fetch_offset = offset + 1
                yield new(  # Record(...) without the named tuple's Python-level __new__
                    Record,
                    (
                        topic,
                        partition,
                        offset,
                        max_ts if log_append_time else first_ts + ts_delta,
                        key,
                        value,
                        headers,
                    ),
                )
        except IndexError as exc:  # a varint or field running past the end of the batch
            raise kerrors.CorruptRecordError(
                f"Record batch for partition {self.topic_partition} at offset {batch.base_offset} "
                "ends inside a record"
            ) from exc
        finally:  # also when the consumer stops taking records half-way through the batch
            self.records_read += read
            self.bytes_read += consumed
        batch._pos = pos

    def _records_legacy(self, batch: Any, topic: str, partition: int) -> Iterator[Record]:
        for record in batch:  # message format v0/v1: kafka-python's own record objects
            if self.check_crcs and not record.validate_crc():
                raise kerrors.CorruptRecordError(
                    f"Record for partition {self.topic_partition} at offset {record.offset} failed crc check"
                )
            headers = tuple((name, b"" if raw is None else bytes(raw)) for name, raw in record.headers or ())
            self.records_read += 1
            self.bytes_read += record.size_in_bytes
            self.next_fetch_offset = record.offset + 1
            value = b"" if record.value is None else bytes(record.value)
            yield Record(topic, partition, record.offset, record.timestamp, record.key, value, headers)
