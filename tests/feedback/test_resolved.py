"""The resolved keys: dedupe state kept for ``ttl_s``, expiry by time, snapshots old and new."""

from __future__ import annotations

import pickle
from collections import deque

from driftloop_feedback.join.resolved import EXPIRED, JOINED, ResolvedKeys
from driftloop_feedback.join.rules import JoinRules
from driftloop_feedback.join.shard import JoinShard
from driftloop_feedback.records import TruthRecord

from tests.feedback.helpers import chain_events


def test_expiry_forgets_keys_resolved_at_or_before_the_cutoff_oldest_first() -> None:
    keys = ResolvedKeys()
    keys.mark(11, JOINED, at=1.0)
    keys.mark_many([12, 13], EXPIRED, at=2.0)
    keys.mark(14, JOINED, at=3.0)
    keys.expire(cutoff=0.5)
    assert keys.status == {11: JOINED, 12: EXPIRED, 13: EXPIRED, 14: JOINED}
    keys.expire(cutoff=2.0)
    assert keys.status == {14: JOINED}
    keys.mark(11, EXPIRED, at=4.0)  # resolved again after it was forgotten
    keys.expire(cutoff=3.0)
    assert keys.status == {11: EXPIRED}


def test_snapshot_restores_the_same_keys_and_expiry_after_many_expired() -> None:
    keys = ResolvedKeys()
    n = 200_000  # past the size at which expired entries are dropped from the arrays
    keys.mark_many(list(range(1, n + 1)), JOINED, at=1.0)
    keys.mark(n + 1, EXPIRED, at=2.0)
    keys.expire(cutoff=1.0)
    assert len(keys.times) == 1  # the expired front was dropped
    keys.mark(n + 2, JOINED, at=3.0)
    restored = ResolvedKeys.restore(pickle.loads(pickle.dumps(keys.snapshot())))
    assert restored.status == {n + 1: EXPIRED, n + 2: JOINED}
    restored.expire(cutoff=2.0)
    assert restored.status == {n + 2: JOINED}


def test_shard_restored_from_a_snapshot_written_before_resolved_keys_keeps_its_dedupe_state() -> None:
    shard = JoinShard(JoinRules(mode="request", ttl_s=60.0))
    feed = chain_events("r1", [[1.0], [2.0]], [4.0, 5.0])
    for event in feed:
        shard.on_log_event(event, logged_at=0.0)
    shard.on_truth(TruthRecord("r1", 0, 4.5, 1.0), logged_at=1.0)
    shard.drain_encoded()
    state = shard.snapshot()
    new = ResolvedKeys.restore(state.pop("resolved_keys"))
    # The old layout: a dict of key -> status and a deque of (time, key).
    state["resolved"] = dict(new.status)
    state["resolved_order"] = deque(zip(new.times, new.keys, strict=True))
    restored = JoinShard.restore(pickle.loads(pickle.dumps(state)), JoinRules(mode="request", ttl_s=60.0))
    restored.on_truth(TruthRecord("r1", 0, 4.5, 2.0), logged_at=2.0)  # joined before the snapshot
    restored.on_truth(TruthRecord("r1", 1, 5.5, 2.0), logged_at=2.0)
    assert [e.example_id for e in restored.drain_labelled()] == ["r1:1"]
    assert restored.counters.duplicate == 1 and restored.counters.joined == 2
    restored.on_timer(100.0)  # past the TTL of both: forgotten, so a resent truth is an orphan
    restored.on_truth(TruthRecord("r1", 0, 4.5, 101.0), logged_at=101.0)
    assert len(restored.resolved) == 0 and len(restored.truths) == 1


def test_a_run_of_truths_joins_dedupes_and_waits_in_order() -> None:
    shard = JoinShard(JoinRules(mode="request"))
    for event in chain_events("r2", [[1.0], [2.0]], [4.0, 5.0]):
        shard.on_log_event(event, logged_at=10.0)
    shard.on_truths(
        [
            ("r2", 0, 1.5, 11.0, 11.0),
            ("r2", 0, 1.5, 11.5, 11.5),  # resent: a duplicate
            ("r3", 0, 2.5, 12.0, 12.0),  # no prediction yet: waits
            ("r3", 0, 2.5, 12.5, 12.5),  # resent while waiting: a duplicate
            ("r2", 1, 3.5, 13.0, 13.0),
        ]
    )
    assert [(e.example_id, e.truth, e.truth_time, e.features) for e in shard.drain_labelled()] == [
        ("r2:0", 1.5, 11.0, (1.0,)),
        ("r2:1", 3.5, 13.0, (2.0,)),
    ]
    assert shard.counters.joined == 2 and shard.counters.duplicate == 2
    assert list(shard.truths) == ["r3:0"] and shard.now == 13.0 and len(shard.store) == 0


def test_repeated_events_of_an_assembled_request_are_duplicates_until_its_ttl() -> None:
    shard = JoinShard(JoinRules(mode="request", ttl_s=60.0))
    feed = chain_events("r1", [[1.0], [2.0]], [4.0, 5.0])
    for event in feed:
        shard.on_log_event(event, logged_at=0.0)
    assert len(shard.store) == 2 and len(shard.done_requests) == 1
    duplicates = shard.counters.duplicate
    for event in feed:  # the same request logged again (e.g. a replayed log)
        shard.on_log_event(event, logged_at=1.0)
    assert shard.counters.duplicate == duplicates + len(feed) and len(shard.store) == 2
    # The state travels through a snapshot as buffers, and still dedupes after a restore.
    state = pickle.loads(pickle.dumps(shard.snapshot()))
    assert "done_requests" not in state and set(state["done_request_keys"]) == {"times", "keys", "statuses"}
    restored = JoinShard.restore(state, JoinRules(mode="request", ttl_s=60.0))
    restored.on_log_event(feed[-1], logged_at=2.0)
    assert restored.counters.duplicate == duplicates + len(feed) + 1
    restored.on_timer(100.0)  # past the TTL: forgotten in one bisection, no scan
    assert len(restored.done_requests) == 0


def test_a_snapshot_with_done_requests_as_a_dict_still_restores_and_dedupes() -> None:
    shard = JoinShard(JoinRules(mode="request", ttl_s=60.0))
    feed = chain_events("r1", [[1.0]], [4.0])
    for event in feed:
        shard.on_log_event(event, logged_at=5.0)
    state = shard.snapshot()
    del state["done_request_keys"]
    state["done_requests"] = {"r1": 5.0, "r0": 3.0}  # the layout before: request id -> time assembled
    restored = JoinShard.restore(pickle.loads(pickle.dumps(state)), JoinRules(mode="request", ttl_s=60.0))
    before = restored.counters.duplicate
    restored.on_log_event(feed[0], logged_at=6.0)
    assert restored.counters.duplicate == before + 1 and len(restored.store) == 1
    assert list(restored.done_requests.times) == [3.0, 5.0]
    restored.on_timer(64.0)  # cutoff 4.0: r0 forgotten, r1 kept
    assert len(restored.done_requests) == 1
