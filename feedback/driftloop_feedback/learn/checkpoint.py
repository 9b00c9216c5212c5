"""The trainer's checkpoint: model state and stream position in one value, replaced atomically in a
state store (``driftloop.statestore``: ``<state_dir>/<model>.checkpoint`` by default, or that key of
the trainer's scope in the compacted state topic with ``DRIFTLOOP_STATE_STORE=log``).

One pickle holds the challenger and the champion it started from, the replay buffer, the deduper's
window, the next offset of every partition read, the policy, the open data window and the candidates
not registered yet. A reader sees the previous checkpoint or the new one, never half of one. Offsets
are committed to the consumer group only after ``write`` returns, so a restart (on any node, with the
log store) resumes from a state that has learned exactly the records below its offsets.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from driftloop.statestore import DirectoryStore, StateStore, StateStoreError
from driftloop_feedback.learn.errors import CheckpointError

FORMAT = 1


class CheckpointStore:
    """``path``: the file the directory store keeps (what ``store`` defaults to)."""

    def __init__(self, directory: Path, model_name: str, store: StateStore | None = None) -> None:
        self.directory = directory
        self.key = f"{model_name}.checkpoint"
        self.path = directory / self.key
        self.store: StateStore = store or DirectoryStore(directory)

    def where(self) -> str:
        return self.store.where(self.key)

    def write(self, state: dict[str, Any]) -> None:
        data = pickle.dumps({"format": FORMAT, **state}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.store.write(self.key, data)
        except StateStoreError as exc:
            raise CheckpointError(f"cannot write the trainer checkpoint {self.where()}: {exc}") from exc

    def load(self) -> dict[str, Any] | None:
        try:
            data = self.store.read(self.key)
        except StateStoreError as exc:
            raise CheckpointError(f"cannot read the trainer checkpoint {self.where()}: {exc}") from exc
        if data is None:
            return None
        try:
            state: dict[str, Any] = pickle.loads(data)
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
            raise CheckpointError(
                f"trainer checkpoint {self.where()} is unreadable ({exc}); move it away to start again "
                "from the champion and the group's committed offsets (examples learned since the last "
                "candidate would be learned again by a fresh challenger)"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"trainer checkpoint {self.where()} has format {found}, want {FORMAT}")
        return state

    def discard(self) -> str:
        """Move the checkpoint aside (``<name>.discarded``); return where it went."""
        try:
            return self.store.discard(self.key)
        except StateStoreError as exc:
            raise CheckpointError(f"cannot move the trainer checkpoint {self.where()} aside: {exc}") from exc

    def close(self) -> None:
        self.store.close()
