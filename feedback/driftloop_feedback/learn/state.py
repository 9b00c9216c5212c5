"""Everything the trainer checkpoints, in one value: model state and stream position together."""

from __future__ import annotations

import zlib
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
    """A 64-bit hash of an id: its CRC-32 (high half) and Adler-32 (low half), both of its UTF-8 bytes
    (stable across processes, unlike ``hash``; computed in C by ``zlib``, so a batch of ids costs no
    Python call per id: ``digest_of``)."""
    data = example_id.encode()
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


def digest_of(example_ids: Iterable[str]) -> int:
    """The sum (mod ``DIGEST_MOD``) of ``id_digest`` over ``example_ids``, a batch at a time. As
    ``(crc << 32) | adler`` equals ``(crc << 32) + adler`` (Adler-32 is below 2**32), the sum is
    ``(sum of CRC-32s << 32) + sum of Adler-32s``: two C-level ``sum``s over C-level maps, no Python call
    and no array per id (~0.3 us an id; through uint64 arrays it was ~0.5)."""
    data = list(map(str.encode, example_ids))
    return ((sum(map(zlib.crc32, data)) << 32) + sum(map(zlib.adler32, data))) % DIGEST_MOD
