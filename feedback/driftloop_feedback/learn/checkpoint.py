"""The trainer's checkpoint: model state and stream position in one file, written atomically.

One pickle holds the challenger and the champion it started from, the replay buffer, the deduper's
window, the next offset of every partition read, the policy, the open data window and the candidates
not registered yet. It is written to a temporary file, fsynced, renamed over the previous one and the
folder fsynced: a reader sees the previous checkpoint or the new one, never half of one. Offsets are
committed to the consumer group only after ``write`` returns, so a restart resumes from a state that
has learned exactly the records below its offsets.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from driftloop.durable import replace_durably
from driftloop_feedback.learn.errors import CheckpointError

FORMAT = 1


class CheckpointStore:
    def __init__(self, directory: Path, model_name: str) -> None:
        self.directory = directory
        self.path = directory / f"{model_name}.checkpoint"

    def write(self, state: dict[str, Any]) -> None:
        data = pickle.dumps({"format": FORMAT, **state}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            replace_durably(self.path, data)
        except OSError as exc:
            raise CheckpointError(
                f"cannot write the trainer checkpoint {self.path}: {exc}; check disk space"
            ) from exc

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as fh:
                state: dict[str, Any] = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise CheckpointError(
                f"trainer checkpoint {self.path} is unreadable ({exc}); move it away to start again from "
                "the champion and the group's committed offsets (examples learned since the last "
                "candidate would be learned again by a fresh challenger)"
            ) from exc
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"trainer checkpoint {self.path} has format {state.get('format')}, want {FORMAT}"
            )
        return state
