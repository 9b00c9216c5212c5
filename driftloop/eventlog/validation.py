"""Checks every implementation applies before anything is sent, so bad input fails the same way
everywhere: with an :class:`EventLogError` subclass that names the topic, header or limit."""

from __future__ import annotations

import re
from collections.abc import Sequence

from driftloop.eventlog.base import EventLogError, Header

# Kafka's own rule (org.apache.kafka.common.internals.Topic): ASCII letters, digits, '.', '_', '-'.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_TOPIC_LENGTH = 249
# Kafka's producer default max.request.size and the broker's default message.max.bytes are ~1 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
# Per-record overhead Kafka counts towards the limit (record batch header + record framing), rounded up.
RECORD_OVERHEAD_BYTES = 128
AUTO_OFFSET_RESETS = ("earliest", "latest")


class InvalidTopicError(EventLogError):
    """A topic name Kafka would reject."""


class InvalidRecordError(EventLogError):
    """A value, key or header of the wrong type."""


class RecordTooLargeError(EventLogError):
    """A record larger than the log's per-message limit."""


def check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not topic:
        raise InvalidTopicError(f"topic name must be a non-empty str, got {topic!r}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"topic name {topic[:40]!r}... is {len(topic)} characters; "
            f"Kafka allows at most {MAX_TOPIC_LENGTH}"
        )
    if topic in (".", "..") or not _TOPIC_RE.match(topic):
        raise InvalidTopicError(
            f"invalid topic name {topic!r}: use only ASCII letters, digits, '.', '_' and '-' "
            "(and not '.' or '..')"
        )
    return topic


def check_partitions(topic: str, partitions: object) -> int:
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise EventLogError(f"topic {topic!r}: partitions must be an int >= 1, got {partitions!r}")
    return partitions


def check_record(
    topic: str,
    value: object,
    key: object,
    headers: Sequence[tuple[str, bytes | str]],
    max_message_bytes: int,
) -> tuple[bytes, bytes | None, tuple[Header, ...]]:
    """Validate one record; return (value, key, headers) with str header values encoded as UTF-8."""
    check_topic(topic)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidRecordError(
            f"topic {topic!r}: value must be bytes, got {type(value).__name__}; "
            "serialise it first (e.g. json.dumps(obj).encode())"
        )
    if key is not None and not isinstance(key, bytes | bytearray | memoryview):
        raise InvalidRecordError(
            f"topic {topic!r}: key must be bytes or None, got {type(key).__name__}; encode it (key.encode())"
        )
    normalised: list[Header] = []
    try:
        items = list(headers)
    except TypeError:
        raise InvalidRecordError(
            f"topic {topic!r}: headers must be a sequence of (name, value) pairs, "
            f"got {type(headers).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise InvalidRecordError(f"topic {topic!r}: header {item!r} is not a (name, value) pair")
        name, raw = item
        if not isinstance(name, str):
            raise InvalidRecordError(
                f"topic {topic!r}: header name {name!r} must be str, got {type(name).__name__}"
            )
        if isinstance(raw, str):
            normalised.append((name, raw.encode()))
        elif isinstance(raw, bytes | bytearray | memoryview):
            normalised.append((name, bytes(raw)))
        else:
            raise InvalidRecordError(
                f"topic {topic!r}: header {name!r} value must be bytes or str, got {type(raw).__name__}"
            )
    value_b = bytes(value)
    key_b = None if key is None else bytes(key)
    size = record_size(value_b, key_b, normalised)
    if size > max_message_bytes:
        raise RecordTooLargeError(
            f"topic {topic!r}: record is {size} bytes (value {len(value_b)}, key and headers included), "
            f"above the limit of {max_message_bytes} bytes (max message size); split the payload or raise "
            "the limit on both the log and the producer"
        )
    return value_b, key_b, tuple(normalised)


def record_size(value: bytes, key: bytes | None, headers: Sequence[Header]) -> int:
    return (
        len(value)
        + (len(key) if key else 0)
        + sum(len(n.encode()) + len(v) for n, v in headers)
        + RECORD_OVERHEAD_BYTES
    )


def check_auto_offset_reset(value: str) -> str:
    if value not in AUTO_OFFSET_RESETS:
        raise EventLogError(f"auto_offset_reset must be one of {AUTO_OFFSET_RESETS}, got {value!r}")
    return value


def check_group_id(group_id: object) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise EventLogError(f"consumer group id must be a non-empty str, got {group_id!r}")
    return group_id


def check_topics(topics: object) -> tuple[str, ...]:
    """A consumer's subscription: a non-empty list of valid topic names (a bare str is refused, since
    iterating it would subscribe to one-letter topics)."""
    if isinstance(topics, str | bytes) or not isinstance(topics, list | tuple | set | frozenset):
        raise EventLogError(f"topics must be a list of topic names, got {topics!r}; e.g. [{topics!r}]")
    if not topics:
        raise EventLogError("topics is empty: subscribe to at least one topic")
    return tuple(check_topic(topic) for topic in topics)


def check_many(
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    headers: Sequence[Sequence[Header]] | None,
    timestamps_ms: Sequence[int | None] | None,
    max_message_bytes: int,
) -> None:
    """Validate the records of one ``send_many`` call, all before any is sent: bytes keys and values,
    (str, bytes) headers, each record within ``max_message_bytes``."""
    check_topic(topic)
    if headers is not None and len(headers) != len(records):
        raise InvalidRecordError(f"topic {topic!r}: {len(headers)} header lists for {len(records)} records")
    if timestamps_ms is not None and len(timestamps_ms) != len(records):
        raise InvalidRecordError(
            f"topic {topic!r}: {len(timestamps_ms)} timestamps for {len(records)} records"
        )
    limit = max_message_bytes - RECORD_OVERHEAD_BYTES
    if headers is None:  # the common case: one pass over (bytes | None, bytes) pairs
        for key, value in records:
            if key is None:
                if type(value) is bytes and len(value) <= limit:
                    continue
            elif type(value) is bytes and type(key) is bytes and len(value) + len(key) <= limit:
                continue
            _check_one(topic, key, value, (), max_message_bytes)
        return
    for (key, value), hdrs in zip(records, headers, strict=True):
        plain = type(value) is bytes and (key is None or type(key) is bytes)
        if plain:
            size = len(value) + (len(key) if key else 0)
            try:
                for name, raw in hdrs:
                    if type(name) is not str or type(raw) is not bytes:
                        plain = False
                        break
                    size += len(raw) + len(name) * 4  # at most 4 UTF-8 bytes per character
            except (TypeError, ValueError):  # not a sequence of pairs: check_record says so
                plain = False
            if plain and size <= limit:
                continue
        _check_one(topic, key, value, hdrs, max_message_bytes)


def _check_one(
    topic: str, key: object, value: object, hdrs: Sequence[Header], max_message_bytes: int
) -> None:
    """The full check of one ``send_many`` record the fast paths could not pass: raises the usual
    error, if any; header values must be bytes."""
    check_record(topic, value, key, hdrs, max_message_bytes)
    if any(type(raw) is not bytes for _, raw in hdrs):
        raise InvalidRecordError(f"topic {topic!r}: send_many takes header values as bytes, not str")
