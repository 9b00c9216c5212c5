from collections.abc import Sequence
from typing import Any

def take_many(
    wanted: Sequence[tuple[str, int, int]],
    index_keys: Any,
    index_slots: Any,
    cols: tuple[Any, ...],
    arena: bytearray,
    endpoints: list[str],
    versions: list[str],
    assets: list[str],
    record_type: type,
) -> tuple[list[Any], bytes, int]: ...
def add_rows(
    slots: Any,
    packed_rid: bytes,
    rid_len: int,
    rows: Sequence[int],
    keys: Sequence[int],
    features: Any,
    predictions: Sequence[float],
    event_times: Sequence[float],
    arrived: float,
    endpoint: int,
    version: int,
    cols: tuple[Any, ...],
    arena: bytearray,
    index_keys: Any,
    index_slots: Any,
) -> int: ...
