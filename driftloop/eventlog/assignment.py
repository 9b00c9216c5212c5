"""Deterministic partition assignment for consumer groups (Kafka's range assignor).

Every member of a group computes the same answer from the same sorted member list, so the embedded log
needs no group leader: for each topic, partitions are split into contiguous ranges over the members
subscribed to it, in member-id order; the first ``partitions % members`` members get one extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from driftloop.eventlog.base import TopicPartition


def range_assign(
    subscriptions: Mapping[str, Sequence[str]], partitions: Mapping[str, int]
) -> dict[str, set[TopicPartition]]:
    """``subscriptions``: member id -> topics; ``partitions``: topic -> partition count."""
    result: dict[str, set[TopicPartition]] = {member: set() for member in subscriptions}
    for topic in sorted(partitions):
        members = sorted(m for m, topics in subscriptions.items() if topic in topics)
        if not members:
            continue
        count = partitions[topic]
        per_member, extra = divmod(count, len(members))
        start = 0
        for index, member in enumerate(members):
            size = per_member + (1 if index < extra else 0)
            result[member].update(TopicPartition(topic, p) for p in range(start, start + size))
            start += size
    return result
