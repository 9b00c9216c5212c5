"""Durable join-state snapshots, one file per (stage, shard), written atomically (temp file, fsync,
rename, fsync of the directory): a reader sees the previous snapshot or the new one, never half of one.

Members of one consumer group must share the directory (one machine, or a shared volume), because a
shard's snapshot is loaded by whichever member the group assigns that partition to.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from driftloop_feedback.errors import SnapshotError

FORMAT = 1


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
        target = self.directory
        try:
            for shard, data in encoded.items():
                target = self.path(stage, shard)
                tmp = target.with_suffix(f".tmp{os.getpid()}")
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise SnapshotError(f"cannot write joiner snapshot {target}: {exc}; check disk space") from exc

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
        if payload.get("format") != FORMAT:
            raise SnapshotError(f"joiner snapshot {target} has format {payload.get('format')}, want {FORMAT}")
        return payload
