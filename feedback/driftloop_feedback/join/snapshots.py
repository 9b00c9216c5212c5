"""Durable join-state snapshots, one file per (stage, shard), written atomically (temp file, fsync,
rename, fsync of the directory): a reader sees the previous snapshot or the new one, never half of one.

Members of one consumer group must share the directory (one machine, or a shared volume), because a
shard's snapshot is loaded by whichever member the group assigns that partition to.

A snapshot records its ``StateSource``: the log (``EventLog.identity()``), the stage's consumer group,
input topics and their partition count, and the shard's partition. Its offsets mean something only
there; the stage compares the source before it applies them (``JoinStage``). Format 1 snapshots
(written before sources were recorded) are still read, with ``source`` None.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from driftloop_feedback.errors import SnapshotError

from driftloop.durable import replace_many_durably
from driftloop.eventlog import TopicPartition
from driftloop.eventlog.state_source import source_problem as shared_source_problem

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
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, stage: str, shard: int) -> Path:
        return self.directory / f"{stage}-{shard:04d}.snapshot"

    def save(self, stage: str, shard: int, payload: dict[str, Any]) -> None:
        self.write(stage, {shard: self.encode(payload)})

    def encode(self, payload: dict[str, Any]) -> bytes:
        """A snapshot's bytes, ready for ``write`` (the join state is captured here)."""
        return pickle.dumps({"format": FORMAT, **payload}, protocol=pickle.HIGHEST_PROTOCOL)

    def write(self, stage: str, encoded: dict[int, bytes]) -> None:
        """Replace the snapshots of these shards (shard -> ``encode``d bytes), each atomically; all are
        durable when this returns (the directory is synced once, after the last rename)."""
        if not encoded:
            return
        files = {self.path(stage, shard): data for shard, data in encoded.items()}
        try:
            replace_many_durably(files, self.directory)
        except OSError as exc:
            raise SnapshotError(
                f"cannot write joiner snapshot {exc.filename}: {exc}; check disk space"
            ) from exc

    def load(self, stage: str, shard: int) -> dict[str, Any] | None:
        target = self.path(stage, shard)
        if not target.exists():
            return None
        try:
            with open(target, "rb") as fh:
                payload: dict[str, Any] = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise SnapshotError(
                f"joiner snapshot {target} is unreadable ({exc}); move it away to rebuild this shard "
                "from the committed offsets (predictions pending in it would then be lost)"
            ) from exc
        if payload.get("format") not in READABLE_FORMATS:
            raise SnapshotError(
                f"joiner snapshot {target} has format {payload.get('format')}, want one of "
                f"{READABLE_FORMATS}; it was written by another driftloop version: run that one, or "
                "move the snapshot away to rebuild this shard from the committed offsets"
            )
        payload.setdefault("source", None)
        return payload

    def discard(self, stage: str, shard: int) -> Path:
        """Move a shard's snapshot aside (to ``<name>.discarded``, replacing an older one there); the
        shard then starts empty. Return where it went."""
        target = self.path(stage, shard)
        aside = target.with_name(target.name + ".discarded")
        try:
            os.replace(target, aside)
        except OSError as exc:
            raise SnapshotError(f"cannot move joiner snapshot {target} aside: {exc}") from exc
        return aside


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
