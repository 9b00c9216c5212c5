"""Durable join-state snapshots, one per (stage, shard), each replaced atomically in a state store
(``driftloop.statestore``): a reader sees the previous snapshot or the new one, never half of one.

A shard's snapshot is loaded by whichever member the group assigns that partition to, so the members
of one consumer group must reach the same store: with ``DRIFTLOOP_STATE_STORE=directory`` (default)
they share the folder (one machine, or a shared volume); with ``log`` the snapshots are keys of a
compacted Kafka topic that every replica on every node reads.

A snapshot records its ``StateSource``: the log (``EventLog.identity()``), the stage's consumer group,
input topics and their partition count, and the shard's partition. Its offsets mean something only
there; the stage compares the source before it applies them (``JoinStage``). Format 1 snapshots
(written before sources were recorded) are still read, with ``source`` None.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from driftloop_feedback.errors import SnapshotError

from driftloop.eventlog import TopicPartition
from driftloop.eventlog.state_source import source_problem as shared_source_problem
from driftloop.statestore import DirectoryStore, StateStore, StateStoreError

FORMAT = 2  # 2: with "source"; 1: without (read, never written)
READABLE_FORMATS = (1, 2)


class SnapshotSourceError(SnapshotError):
    """A snapshot was taken from another log, consumer group, topics or partition than the stage reads:
    its offsets would skip or repeat input there."""


@dataclass(frozen=True)
class StateSource:
    """What one shard's state and offsets were read from."""

    log: str  # EventLog.identity()
    group: str  # the stage's consumer group
    topics: tuple[str, ...]  # the stage's input topics, in its order
    partitions: int  # partitions of each of them (co-partitioned)
    partition: int  # the shard's partition

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, recorded: Any) -> StateSource | None:
        """The recorded source, or None if it is not one this version understands."""
        names = {f.name for f in fields(cls)}
        if not isinstance(recorded, dict) or set(recorded) != names:
            return None
        try:
            return cls(**{**recorded, "topics": tuple(recorded["topics"])})
        except TypeError:
            return None

    def describe(self) -> str:
        return (
            f"log {self.log}, group {self.group}, topics {', '.join(self.topics)} "
            f"({self.partitions} partitions), partition {self.partition}"
        )

    def differences(self, other: StateSource) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


class SnapshotStore:
    """The stage snapshots of one consumer group in a state store (``driftloop.statestore``): files
    ``<stage>-<shard>.snapshot`` in the group's folder, or those keys in the changelog topic."""

    def __init__(self, store: StateStore | Path) -> None:
        self.store: StateStore = DirectoryStore(store) if isinstance(store, Path) else store

    @staticmethod
    def key(stage: str, shard: int) -> str:
        return f"{stage}-{shard:04d}.snapshot"

    def where(self, stage: str, shard: int) -> str:
        return self.store.where(self.key(stage, shard))

    def save(self, stage: str, shard: int, payload: dict[str, Any]) -> None:
        self.write(stage, {shard: self.encode(payload)})

    def encode(self, payload: dict[str, Any]) -> bytes:
        """A snapshot's bytes, ready for ``write`` (the join state is captured here)."""
        return pickle.dumps({"format": FORMAT, **payload}, protocol=pickle.HIGHEST_PROTOCOL)

    def write(self, stage: str, encoded: dict[int, bytes]) -> None:
        """Replace the snapshots of these shards (shard -> ``encode``d bytes), each atomically; all are
        durable when this returns."""
        if not encoded:
            return
        try:
            self.store.write_many({self.key(stage, shard): data for shard, data in encoded.items()})
        except StateStoreError as exc:
            raise SnapshotError(f"cannot write joiner snapshots: {exc}") from exc

    def load(self, stage: str, shard: int) -> dict[str, Any] | None:
        where = self.where(stage, shard)
        try:
            data = self.store.read(self.key(stage, shard))
        except StateStoreError as exc:
            raise SnapshotError(f"cannot read joiner snapshot {where}: {exc}") from exc
        if data is None:
            return None
        try:
            payload: dict[str, Any] = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise SnapshotError(
                f"joiner snapshot {where} is unreadable ({exc}); move it away to rebuild this shard "
                "from the committed offsets (predictions pending in it would then be lost)"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise SnapshotError(
                f"joiner snapshot {where} has format {found}, want one of "
                f"{READABLE_FORMATS}; it was written by another driftloop version: run that one, or "
                "move the snapshot away to rebuild this shard from the committed offsets"
            )
        payload.setdefault("source", None)
        return payload

    def discard(self, stage: str, shard: int) -> str:
        """Move a shard's snapshot aside (to ``<name>.discarded``, replacing an older one there); the
        shard then starts empty. Return where it went."""
        try:
            return self.store.discard(self.key(stage, shard))
        except StateStoreError as exc:
            raise SnapshotError(
                f"cannot move joiner snapshot {self.where(stage, shard)} aside: {exc}"
            ) from exc

    def close(self) -> None:
        self.store.close()


def source_problem(
    saved: dict[str, Any],
    expected: StateSource,
    end_offset: Callable[[TopicPartition], int],
    committed: Callable[[TopicPartition], int | None],
) -> str | None:
    """Why the loaded snapshot ``saved`` must not be applied to ``expected``'s log, or None.

    A snapshot that names its source must name this one, and its offsets must not lie past the end of
    the log (a topic deleted and created again under the same name). A format 1 snapshot names none: it
    is adopted only if this log vouches for every offset in it, i.e. the group committed an offset no
    later than the snapshot's (checkpoints write the snapshot, then commit it) and the partition reaches
    that far; a log it was not taken from has, in practice, no commits of this group at all."""
    return shared_source_problem(
        saved["source"], expected, saved["offsets"], end_offset, committed, reader="stage", state="snapshot"
    )
