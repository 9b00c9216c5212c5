"""The monitor's durable state: one snapshot (open windows, unpaired requests, the request ids seen,
and the log offsets all of that covers), replaced atomically in a state store
(``driftloop.statestore``: ``<state_dir>/monitor.snapshot`` by default, or that key of the monitor's
scope in the compacted state topic with ``DRIFTLOOP_STATE_STORE=log``): a reader sees the previous
snapshot or the new one, never half of one.

Offsets are committed to the consumer group only after the snapshot holding them is stored, and on
restart (on any node, with the log store) records below the snapshot's offsets are skipped: a crash
between the two never counts a row twice.

The snapshot records its source (``StateSource``: log identity, consumer group, topic) next to the
offsets; the monitor checks it before applying them (``DriftMonitor``). Format 1 snapshots, written
before sources were recorded, are still read, with ``source`` None.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from driftloop.statestore import DirectoryStore, StateStore, StateStoreError
from driftloop_feedback.monitor.errors import MonitorStateError

FORMAT = 2  # 2: with "source"; 1: without (read, never written)
READABLE_FORMATS = (1, 2)
FILENAME = "monitor.snapshot"


class StateFile:
    """``path``: the file the directory store keeps (what ``store`` defaults to)."""

    def __init__(self, directory: Path, store: StateStore | None = None) -> None:
        self.directory = directory
        self.path = directory / FILENAME
        self.store: StateStore = store or DirectoryStore(directory)

    def where(self) -> str:
        return self.store.where(FILENAME)

    def save(self, payload: dict[str, Any]) -> None:
        data = pickle.dumps({"format": FORMAT, **payload}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.store.write(FILENAME, data)
        except StateStoreError as exc:
            raise MonitorStateError(f"cannot write monitor state {self.where()}: {exc}") from exc

    def load(self) -> dict[str, Any] | None:
        try:
            data = self.store.read(FILENAME)
        except StateStoreError as exc:
            raise MonitorStateError(f"cannot read monitor state {self.where()}: {exc}") from exc
        if data is None:
            return None
        try:
            payload: dict[str, Any] = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise MonitorStateError(
                f"monitor state {self.where()} is unreadable ({exc}); move it away to start from the "
                "committed offsets (the open windows in it are then lost)"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") not in READABLE_FORMATS:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise MonitorStateError(
                f"monitor state {self.where()} has format {found}, want one of {READABLE_FORMATS}: it "
                "was written by another driftloop version; run that one, or move it away"
            )
        payload.setdefault("source", None)
        return payload

    def discard(self) -> str:
        """Move the snapshot aside (``monitor.snapshot.discarded``); return where it went."""
        try:
            return self.store.discard(FILENAME)
        except StateStoreError as exc:
            raise MonitorStateError(f"cannot move monitor state {self.where()} aside: {exc}") from exc

    def close(self) -> None:
        self.store.close()
