"""Everything the trainer checkpoints, in one value: model state and stream position together."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from driftloop.eventlog import TopicPartition
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.learn.candidates import Candidate
from driftloop_feedback.learn.challenger import Challenger
from driftloop_feedback.learn.champion import Champion
from driftloop_feedback.learn.policy import CandidatePolicy
from driftloop_feedback.learn.window import DataWindow

DIGEST_MOD = 2**64


@dataclass
class TrainerState:
    champion: Champion
    challenger: Challenger
    deduper: LabelledDeduper
    policy: CandidatePolicy
    window: DataWindow
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # labelled: next offset to read
    drift_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    pending: list[Candidate] = field(default_factory=list)
    consumed: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # The sum (mod 2**64) of a hash of every example id learned: equal to the same sum over the distinct
    # ids of the topic exactly when each was learned once (a test's witness, cheap to keep).
    learned_digest: int = 0
    candidates_cut: int = 0
    last_candidate_version: int | None = None
    registered_versions: list[int] = field(default_factory=list)
    # where ``offsets`` ("labelled") and ``drift_offsets`` ("drift") were read: ``StateSource.as_dict``
    # of each; None in a checkpoint written before sources were recorded
    sources: dict[str, dict[str, Any]] | None = None


def id_digest(example_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(example_id.encode(), digest_size=8).digest(), "little")


def digest_of(example_ids: Iterable[str]) -> int:
    """The sum (mod ``DIGEST_MOD``) of ``id_digest`` over ``example_ids`` (inlined: a batch at a time)."""
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    return (
        sum(from_bytes(blake2b(i.encode(), digest_size=8).digest(), "little") for i in example_ids)
        % DIGEST_MOD
    )
