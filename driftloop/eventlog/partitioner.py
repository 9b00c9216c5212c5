"""Key -> partition, exactly as Kafka's default partitioner does it.

``partition_for_key`` is ``(murmur2(key) & 0x7fffffff) % partitions`` with Kafka's murmur2 (seed
``0x9747b28c``), so a keyed record lands on the same partition number in the embedded log, in the
in-memory log, with the Java client and with kafka-python. Keyless records are spread round-robin.
"""

from __future__ import annotations

import itertools
import threading

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` as an unsigned 32-bit value (Java returns the same bits as a signed int)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class RoundRobin:
    """Spreads keyless records over partitions, one counter per producer (thread-safe)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def next(self, partitions: int) -> int:
        with self._lock:
            return next(self._counter) % partitions
