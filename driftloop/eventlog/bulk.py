"""Many records to one partition in one call: ``send_many``, for producers that emit records by the
ten thousand (the joiner, the local runtime's request log). The Kafka producer has a bulk path
(``KafkaProducer.send_many``, see ``kafka_bulk``: a fraction of the CPU per record), the embedded one
appends them in one transaction (``EmbeddedProducer.send_many``); any other producer gets one ``send``
per record.

>>> from driftloop.eventlog import MemoryEventLog
>>> log = MemoryEventLog()
>>> log.create_topic("t", 2)
>>> send_many(log.producer(), "t", [(b"k1", b"v1"), (None, b"v2")], partition=1)
>>> [(r.key, r.value) for r in log.consumer("g", ["t"]).poll(0)]
[(b'k1', b'v1'), (None, b'v2')]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from driftloop.eventlog.base import Header, Producer
from driftloop.eventlog.validation import check_many


def send_many(
    producer: Producer,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    *,
    partition: int,
    headers: Sequence[Sequence[Header]] | None = None,
    timestamps_ms: Sequence[int | None] | None = None,
) -> None:
    """Queue (key, value) records for ``partition`` of ``topic``, in order; ``headers`` and
    ``timestamps_ms``, when given, run parallel to ``records`` (a timestamp of None means now).

    Keys, values and headers are checked for every record before any is sent (the size limit too, on
    Kafka; elsewhere each ``send`` enforces it). Outcomes are reported by ``flush``, as for ``send``.
    """
    bulk = getattr(producer, "send_many", None)
    if bulk is not None:
        bulk(topic, records, partition=partition, headers=headers, timestamps_ms=timestamps_ms)
        return
    check_many(topic, records, headers, timestamps_ms, sys.maxsize)
    send_each(producer, topic, records, partition=partition, headers=headers, timestamps_ms=timestamps_ms)


def send_each(
    producer: Producer,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    *,
    partition: int,
    headers: Sequence[Sequence[Header]] | None = None,
    timestamps_ms: Sequence[int | None] | None = None,
) -> None:
    """``send_many`` as one ``send`` per record (already checked): the path without a bulk append."""
    for i, (key, value) in enumerate(records):
        producer.send(
            topic,
            value,
            key=key,
            partition=partition,
            headers=() if headers is None else headers[i],
            timestamp_ms=None if timestamps_ms is None else timestamps_ms[i],
        )
