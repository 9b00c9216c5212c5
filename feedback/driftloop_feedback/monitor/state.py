"""The monitor's durable state: one snapshot file (open windows, unpaired requests, the request ids
seen, and the log offsets all of that covers), written atomically (temp file, fsync, rename, fsync of
the folder): a reader sees the previous snapshot or the new one, never half of one.

Offsets are committed to the consumer group only after the snapshot holding them is durable, and on
restart records below the snapshot's offsets are skipped: a crash between the two never counts a row
twice.

The snapshot records its source (``StateSource``: log identity, consumer group, topic) next to the
offsets; the monitor checks it before applying them (``DriftMonitor``). Format 1 snapshots, written
before sources were recorded, are still read, with ``source`` None.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from driftloop.durable import replace_durably
from driftloop_feedback.monitor.errors import MonitorStateError

FORMAT = 2  # 2: with "source"; 1: without (read, never written)
READABLE_FORMATS = (1, 2)
FILENAME = "monitor.snapshot"


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / FILENAME

    def save(self, payload: dict[str, Any]) -> None:
        data = pickle.dumps({"format": FORMAT, **payload}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            replace_durably(self.path, data)
        except OSError as exc:
            raise MonitorStateError(
                f"cannot write monitor state {self.path}: {exc}; check disk space"
            ) from exc

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as fh:
                payload: dict[str, Any] = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError) as exc:
            raise MonitorStateError(
                f"monitor state {self.path} is unreadable ({exc}); move it away to start from the "
                "committed offsets (the open windows in it are then lost)"
            ) from exc
        if payload.get("format") not in READABLE_FORMATS:
            found = payload.get("format")
            raise MonitorStateError(
                f"monitor state {self.path} has format {found}, want one of {READABLE_FORMATS}: it was "
                "written by another driftloop version; run that one, or move it away"
            )
        payload.setdefault("source", None)
        return payload
