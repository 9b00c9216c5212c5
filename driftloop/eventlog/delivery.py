"""Deliveries that are already settled when ``send`` returns (the in-memory and embedded logs write
synchronously, so a send that returns has been acknowledged)."""

from __future__ import annotations

from driftloop.eventlog.base import EventLogError, RecordMetadata


class CommitFailedError(EventLogError):
    """The group rebalanced: some partitions are now another member's; their records will be
    re-delivered there (at-least-once). Poll again and carry on."""


class CompletedDelivery:
    """A delivery whose outcome is known: metadata of the acknowledged record."""

    def __init__(self, metadata: RecordMetadata) -> None:
        self._metadata = metadata

    def get(self, timeout_s: float | None = None) -> RecordMetadata:
        return self._metadata

    def __repr__(self) -> str:
        return f"CompletedDelivery({self._metadata})"
