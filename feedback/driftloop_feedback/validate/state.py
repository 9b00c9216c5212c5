"""The validator worker's durable state: the validation in progress and the stream position, one file.

One pickle holds the next offset of every partition read, the deduper's window, the validation in
progress (both frozen models and the test's O(1) state) and verdicts decided but not written yet. It is
written to a temporary file, fsynced and renamed over the previous one, then the folder is fsynced: a
reader sees the previous state or the new one, never half of one. Offsets are committed to the group
only after ``write`` returns, so after a crash the worker resumes the same test at the row after the
last one it fed, and no row is fed to a test twice.

The state records its source (``ValidatorState.source``: log identity, consumer group, topic, a
``StateSource`` dict); the worker checks it before applying the offsets. States written before it was
recorded load with ``source`` None (adopted only where the log vouches for their offsets).
"""

from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftloop.durable import replace_durably
from driftloop.eventlog import TopicPartition
from driftloop.registry import ModelVersionRef
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.validate.errors import ValidatorError
from driftloop_feedback.validate.validator import ValidationResult, Validator

FORMAT = 1


class ValidatorStateError(ValidatorError):
    """The validator's state file cannot be read or written."""


class ValidatorStateSourceError(ValidatorStateError):
    """The validator's state was taken from another log, consumer group or topic."""


@dataclass(frozen=True)
class TrainingWindow:
    """What the challenger may have learned, from its run's ``window.*`` params (trainer candidates).

    A row of a partition the window names is new to the challenger from the window's next offset on; a
    row of a partition it does not name, when its event time is after the window's last. Without
    params (a version registered by hand) every row read after the challenger was seen is used.
    """

    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    event_time_max: float | None = None
    last_example_id: str | None = None

    def trained_on(self, tp: TopicPartition, offset: int, event_time: float) -> bool:
        if tp in self.next_offsets:
            return offset < self.next_offsets[tp]
        return self.event_time_max is not None and event_time <= self.event_time_max

    @classmethod
    def from_params(cls, params: dict[str, str], topic: str) -> TrainingWindow:
        prefix = f"window.offsets.{topic}/"
        offsets: dict[TopicPartition, int] = {}
        for key, value in params.items():
            if key.startswith(prefix):
                try:
                    offsets[TopicPartition(topic, int(key[len(prefix) :]))] = int(value.split("-")[1])
                except (ValueError, IndexError):
                    continue  # not the trainer's "<first>-<next>": the event-time rule applies
        try:
            time_max: float | None = float(params.get("window.event_time_max", ""))
        except ValueError:
            time_max = None
        return cls(offsets, time_max, params.get("window.last_example_id") or None)


@dataclass
class ValidationRun:
    """One challenger against one champion, from the first fresh row to its verdict."""

    challenger: ModelVersionRef
    champion: ModelVersionRef
    validator: Validator
    window: TrainingWindow
    started_at: float
    skipped: Counter[str] = field(default_factory=Counter)  # rows not scored, by reason (this run)

    def result(self) -> ValidationResult:
        return self.validator.result()


@dataclass
class ValidatorState:
    offsets: dict[TopicPartition, int]  # next offset to read per partition
    deduper: LabelledDeduper
    run: ValidationRun | None = None  # in progress (not concluded)
    unpublished: list[ValidationRun] = field(default_factory=list)  # concluded, verdict not written yet
    superseded: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # tags not written yet
    # where ``offsets`` were read (``StateSource.as_dict``); None in a state saved before it was recorded
    source: dict[str, Any] | None = None


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, state: ValidatorState) -> None:
        data = pickle.dumps({"format": FORMAT, "state": state}, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            replace_durably(self.path, data)
        except OSError as exc:
            raise ValidatorStateError(
                f"cannot write the validator state {self.path}: {exc}; check disk space and permissions"
            ) from exc

    def load(self) -> ValidatorState | None:
        if not self.path.exists():
            return None
        try:
            with open(self.path, "rb") as fh:
                saved = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise ValidatorStateError(
                f"validator state {self.path} is unreadable ({exc}); move it away to start again: the "
                "current challenger is then validated afresh on rows after the group's committed offsets"
            ) from exc
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValidatorStateError(f"validator state {self.path} is not format {FORMAT}: move it away")
        state: ValidatorState = saved["state"]
        return state
