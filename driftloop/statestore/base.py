"""The state-store port: ``read(key) -> bytes | None``, ``write``/``write_many`` (each key replaced
atomically: a reader sees the previous value or the new one, never half of one), ``discard`` (move a
value aside, for state that belongs to another log)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from driftloop.errors import DriftloopError


class StateStoreError(DriftloopError):
    """State cannot be read or written; the message names the store and what to check."""


@runtime_checkable
class StateStore(Protocol):
    def where(self, key: str) -> str:
        """Where ``key``'s value lives, for messages (a path, or a topic and key)."""
        ...

    def read(self, key: str) -> bytes | None:
        """The newest complete value written under ``key`` by any replica, or None."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Replace ``key``'s value; it is durable when this returns."""
        ...

    def write_many(self, items: Mapping[str, bytes]) -> None:
        """Replace several values, each atomically; all are durable when this returns (if it raises,
        some may have been replaced and others not, each whole)."""
        ...

    def discard(self, key: str) -> str:
        """Move ``key``'s value aside (to ``<key>.discarded``, replacing an older one there); ``key``
        then reads None. Return where it went."""
        ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """A key is a non-empty file name: no folder separators, no NUL, not ``.``/``..``."""
    if not key or "/" in key or "\0" in key or key in (".", "..") or len(key) > 200:
        raise StateStoreError(
            f"state key {key!r} is not a plain name (1-200 characters, no '/', no NUL, not '.' or '..')"
        )
    return key
