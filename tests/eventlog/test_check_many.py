"""``check_many``'s fast paths accept exactly what the full per-record check accepts, and refuse the
rest with the same errors."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.eventlog.validation import (
    RECORD_OVERHEAD_BYTES,
    InvalidRecordError,
    InvalidTopicError,
    RecordTooLargeError,
    check_many,
)

LIMIT = 1000


def test_plain_records_within_the_limit_pass() -> None:
    body = LIMIT - RECORD_OVERHEAD_BYTES
    check_many(
        "t",
        [(None, b""), (b"", b""), (b"k", b"v"), (None, bytes(body)), (b"ab", bytes(body - 2))],
        None,
        None,
        LIMIT,
    )
    check_many("t", [(b"k", b"v")], [[("h", b"x"), ("", b"")]], [None], LIMIT)
    check_many("t", [], None, None, LIMIT)


@pytest.mark.parametrize(
    ("records", "headers", "error", "match"),
    [
        ([(None, "text")], None, InvalidRecordError, "value must be bytes"),
        ([(b"k", {"a": 1})], None, InvalidRecordError, "value must be bytes"),
        ([("key", b"v")], None, InvalidRecordError, "key must be bytes"),
        ([(None, bytes(LIMIT - RECORD_OVERHEAD_BYTES + 1))], None, RecordTooLargeError, "limit of 1000"),
        ([(b"kk", bytes(LIMIT - RECORD_OVERHEAD_BYTES - 1))], None, RecordTooLargeError, "limit of 1000"),
        ([(b"k", b"v")], [[("h", "text")]], InvalidRecordError, "header values as bytes"),
        ([(b"k", b"v")], [[(b"h", b"v")]], InvalidRecordError, "header name"),
        ([(b"k", b"v")], [[("h", 3)]], InvalidRecordError, "must be bytes or str"),
        ([(b"k", b"v")], [[("h",)]], InvalidRecordError, "not a \\(name, value\\) pair"),
        ([(b"k", b"v")], [5], InvalidRecordError, "headers must be a sequence"),
        ([(b"k", b"v")], [[("h", bytes(LIMIT))]], RecordTooLargeError, "limit of 1000"),
        ([(b"k", b"v"), (b"k", b"v")], [[]], InvalidRecordError, "2 header lists for 3 records"),
    ],
)
def test_bad_records_are_refused(records: Any, headers: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_many("t", [(b"ok", b"ok"), *records], None if headers is None else [[], *headers], None, LIMIT)


def test_wide_header_names_are_measured_exactly() -> None:
    body = LIMIT - RECORD_OVERHEAD_BYTES
    check_many("t", [(None, bytes(body - 6))], [[("ü", b"1234")]], None, LIMIT)  # 2 + 4 bytes: fits
    with pytest.raises(RecordTooLargeError):
        check_many("t", [(None, bytes(body - 5))], [[("ü", b"1234")]], None, LIMIT)


def test_topic_and_timestamps_are_checked() -> None:
    with pytest.raises(InvalidTopicError):
        check_many("bad topic", [(None, b"v")], None, None, LIMIT)
    with pytest.raises(InvalidRecordError, match="2 timestamps for 1 records"):
        check_many("t", [(None, b"v")], None, [1, 2], LIMIT)
