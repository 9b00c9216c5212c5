"""Where a worker's saved offsets came from, and whether they may be applied to the log it reads now.

State kept outside the log (the drift monitor's snapshot, the trainer's checkpoint, the validator's
state) holds offsets that mean something only in the log, consumer group and topics they were read
from. Each records its ``StateSource``; on restore ``source_problem`` says why it must not be applied
here (or None). A worker refuses such state with a message naming both sources and its reset setting,
or, with that setting, moves the file aside (``move_aside``) and starts from this log's committed
offsets: never are foreign offsets applied, which would skip input (or read it twice).

State written before sources were recorded names none: it is adopted only where this log vouches for
every offset in it (the group committed an offset no later than the state's, as a worker commits only
after saving, and the partition reaches that far); a log it was not taken from has, in practice, no
commits of that group at all.

>>> s = StateSource("memory:1", "g", ("t",))
>>> StateSource.from_dict(s.as_dict()) == s
True
>>> problem = source_problem(s.as_dict(), StateSource("memory:2", "g", ("t",)), {}, lambda tp: 0, dict.get)
>>> problem.endswith("this worker reads log memory:2, group g, topics t (they differ in log)")
True
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from driftloop.eventlog.base import EventLogError, TopicPartition


@dataclass(frozen=True)
class StateSource:
    """What one consumer's saved offsets were read from."""

    log: str  # EventLog.identity()
    group: str  # consumer group
    topics: tuple[str, ...]  # topics read

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "topics": list(self.topics)}

    @classmethod
    def from_dict(cls, recorded: Any) -> StateSource | None:
        """The recorded source, or None if it is not one this version understands."""
        names = {f.name for f in fields(cls)}
        if not isinstance(recorded, dict) or set(recorded) != names:
            return None
        topics = recorded["topics"]
        if not isinstance(topics, list | tuple) or not all(isinstance(t, str) for t in topics):
            return None
        if not isinstance(recorded["log"], str) or not isinstance(recorded["group"], str):
            return None
        return cls(recorded["log"], recorded["group"], tuple(topics))

    def describe(self) -> str:
        return f"log {self.log}, group {self.group}, topics {', '.join(self.topics)}"

    def differences(self, other: StateSource) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


def source_problem(
    recorded: Any,
    expected: Any,
    offsets: Mapping[TopicPartition, int],
    end_offset: Callable[[TopicPartition], int],
    committed: Callable[[TopicPartition], int | None],
    *,
    reader: str = "worker",
    state: str = "state",
) -> str | None:
    """Why ``offsets``, saved with source ``recorded`` (None: state written before sources were
    recorded), must not be applied to ``expected``'s log; or None. ``expected`` is a ``StateSource`` or
    another source type with the same methods and ``log``/``group``/``topics`` (the joiner's, which
    also names partitions); ``reader`` and ``state`` name the reader and its state in the message."""
    if recorded is not None:
        source = type(expected).from_dict(recorded)
        if source is None:
            return f"it records a source this version cannot read ({recorded!r})"
        if source != expected:
            return (
                f"it was taken from {source.describe()}; this {reader} reads {expected.describe()} "
                f"(they differ in {', '.join(source.differences(expected))})"
            )
    for tp, offset in sorted(offsets.items()):
        if tp.topic not in expected.topics:
            return f"it holds an offset of topic {tp.topic!r}, which this {reader} does not read"
        end = end_offset(tp)
        if offset > end:
            return (
                f"its offset {offset} of {tp.topic}[{tp.partition}] lies past the end of that partition "
                f"({end}) in log {expected.log}: the topic was deleted and created again, or truncated"
            )
        if recorded is None:
            done = committed(tp)
            if done is None or done > offset:
                return (
                    f"it was written by an earlier driftloop that did not record its source, and log "
                    f"{expected.log} does not vouch for it: group {expected.group} has "
                    f"{'no committed offset' if done is None else f'committed offset {done}'} for "
                    f"{tp.topic}[{tp.partition}], the {state}'s offset is {offset}"
                )
    return None


def end_offsets_of(log_end_offsets: Callable[[str], dict[int, int]]) -> Callable[[TopicPartition], int]:
    """``end_offset`` for ``source_problem`` from ``EventLog.end_offsets`` (a missing topic ends at 0),
    each topic asked once."""
    ends: dict[str, dict[int, int]] = {}

    def end_offset(tp: TopicPartition) -> int:
        if tp.topic not in ends:
            try:
                ends[tp.topic] = log_end_offsets(tp.topic)
            except EventLogError:  # the topic does not exist in this log
                ends[tp.topic] = {}
        return ends[tp.topic].get(tp.partition, 0)

    return end_offset


def refusal(what: str, path: Path | str, problem: str, reset_variable: str, state_variable: str) -> str:
    """The message of a worker that refuses state taken elsewhere: both sources, and the ways out."""
    return (
        f"{what} {path} does not belong to the log this worker reads: {problem}. Its offsets mean "
        f"nothing here, so the worker stops rather than skip input. Run it against the log the state was "
        f"taken from; or give it a state directory of its own for this log ({state_variable}, or another "
        f"DRIFTLOOP_HOME); or set {reset_variable}=true to move the state aside (to *.discarded) and "
        "start from this log's committed offsets"
    )


def move_aside(path: Path) -> Path:
    """Move a state file to ``<name>.discarded`` (replacing an older one there); return where it went."""
    aside = path.with_name(path.name + ".discarded")
    os.replace(path, aside)
    return aside
