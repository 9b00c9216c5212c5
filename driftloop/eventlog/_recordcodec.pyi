from collections.abc import Sequence
from typing import Any

from driftloop.eventlog.base import Header, Record

class CorruptRecord(ValueError): ...

def decode_v2(
    buf: Any,
    pos: int,
    count: int,
    base_offset: int,
    topic: str,
    partition: int,
    first_ts: int,
    max_ts: int,
    log_append_time: bool,
    record_type: type[Record],
) -> tuple[list[Record], int, int]: ...
def encode_v2(
    out: bytearray,
    records: Sequence[tuple[bytes | None, bytes]],
    start: int,
    room: int,
    first: bool,
    offset: int,
    first_ts: int,
    max_ts: int,
    now_ms: int,
    headers: Sequence[Sequence[Header]] | None,
    stamps: Sequence[int | None] | None,
) -> tuple[int, int, int]: ...
