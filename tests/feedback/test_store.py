"""The compact pending store and its hash index; the docstring examples of the feedback modules."""

from __future__ import annotations

import doctest
import importlib
import uuid

import pytest
from driftloop_feedback.join.store import PendingStore, key_hash

MODULES = [
    "driftloop_feedback.join.store",
    "driftloop_feedback.join.hash_index",
    "driftloop_feedback.join.shard",
    "driftloop_feedback.join.resolved",
    "driftloop_feedback.join.pipeline",
    "driftloop_feedback.labelled",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_add_find_remove_snapshot_across_growth_uuid_and_plain_ids() -> None:
    store = PendingStore(capacity=2)
    ids = [str(uuid.uuid4()) for _ in range(3000)] + [f"req-{i}" for i in range(2000)]
    for i, rid in enumerate(ids):
        store.add(
            rid,
            i % 3,
            features=[i, 1.0],
            prediction=i,
            event_time=i,
            arrived=i,
            endpoint="e",
            model_version="1",
            asset_id="pump-01" if i % 2 else None,
        )
    for i, rid in enumerate(ids):
        pending = store.get(store.find(rid, i % 3))
        assert (pending.request_id, pending.row, pending.features) == (rid, i % 3, (float(i), 1.0))
        assert pending.asset_id == ("pump-01" if i % 2 else None)
        if i % 2:
            store.remove(store.find(rid, i % 3))
    assert store.find(ids[0], 1) == -1  # same request id, another row
    restored = PendingStore.restore(store.snapshot())
    assert len(restored) == 2500
    assert [restored.find(rid, i % 3) >= 0 for i, rid in enumerate(ids)] == [i % 2 == 0 for i in range(5000)]
    assert restored.arrived_before(9.0) == sorted(restored.find(ids[i], i % 3) for i in (0, 2, 4, 6, 8))


def test_removing_an_unknown_slot_is_an_error() -> None:
    with pytest.raises(IndexError):
        PendingStore().remove(-1)


def test_add_rows_stores_the_same_slots_and_bytes_as_one_add_per_row() -> None:
    import numpy as np
    from driftloop_feedback.join.store import key_hash

    rid = "3f0c1a2b-0000-4000-8000-00000000abcd"
    features = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    one_by_one, at_once = PendingStore(capacity=2), PendingStore(capacity=2)  # both grow on the way
    for store in (one_by_one, at_once):
        store.add("other", 0, features=[1.0] * 4, prediction=1.0, event_time=1.0, arrived=1.0,
                  endpoint="e", model_version="1")  # fmt: skip
    for i in (0, 2, 5):
        row = features[[0, 2, 5].index(i)]
        one_by_one.add(rid, i, features=row.tolist(), prediction=i / 3, event_time=10.0 + i,
                       arrived=9.0, endpoint="main", model_version="3")  # fmt: skip
    keys = [key_hash(rid, i) for i in (0, 2, 5)]
    at_once.add_rows(rid, [0, 2, 5], keys, features, [0.0, 2 / 3, 5 / 3], [10.0, 12.0, 15.0],
                     arrived=9.0, endpoint="main", model_version="3")  # fmt: skip
    a, b = one_by_one.snapshot(), at_once.snapshot()
    assert a["arena"] == b["arena"] and a["free"] == b["free"] and a["count"] == b["count"] == 4
    assert all(np.array_equal(a["cols"][name], b["cols"][name]) for name in a["cols"])
    assert sorted(a["index"].entries()) == sorted(b["index"].entries())
    assert at_once.get(at_once.find(rid, 5)).features == tuple(features[2].tolist())


def test_index_rehash_keeps_every_entry_findable_with_wraparound_and_tombstones() -> None:
    import random

    from driftloop_feedback.join.hash_index import HashIndex

    rng = random.Random(7)
    index = HashIndex(8)
    live: dict[int, int] = {}
    for slot in range(5000):
        # Hashes crowding the last positions of the table make runs that wrap past its end.
        h = rng.getrandbits(64) | 0xFFF if slot % 3 else rng.getrandbits(64)
        index.put(h, slot)
        live[slot] = h
        if slot % 4 == 0:  # leave tombstones behind
            gone = rng.choice(sorted(live))
            index.remove(live.pop(gone), gone)
        if slot % 500 == 0:
            index._rehash(len(index.keys))  # same size: tombstones dropped
            assert index.used == index.live == len(live)
    for slot, h in live.items():
        assert slot in index.probe(h)
    assert sorted(s for _, s in index.entries()) == sorted(live)


def test_index_put_many_places_entries_as_one_put_each() -> None:
    import random

    from driftloop_feedback.join.hash_index import HashIndex

    rng = random.Random(3)
    pairs = [(rng.getrandbits(64), slot) for slot in range(3000)]
    one, many = HashIndex(4), HashIndex(4)
    for h, slot in pairs:
        one.put(h, slot)
    many.put_many([h for h, _ in pairs], [slot for _, slot in pairs])
    assert (one.keys, one.slots, one.used, one.live) == (many.keys, many.slots, many.used, many.live)


def test_arena_compaction_keeps_every_live_entry_and_drops_the_dead_bytes() -> None:
    store = PendingStore(capacity=4)
    ids = [str(uuid.uuid4()) if i % 3 else f"plain-{i}" for i in range(60_000)]
    for i, rid in enumerate(ids):
        store.add(rid, i % 7, features=[float(i)] * (1 + i % 5), prediction=i / 2, event_time=float(i),
                  arrived=1.0, endpoint="e", model_version="v")  # fmt: skip
    kept = {}
    for i, rid in enumerate(ids):
        if i % 4:
            assert store.take(rid, i % 7, key_hash(rid, i % 7)) is not None  # compacts on the way
        else:
            kept[(rid, i % 7)] = (tuple([float(i)] * (1 + i % 5)), i / 2)
    arena = store.snapshot()["arena"]
    live = sum((16 if len(rid) == 36 else len(rid)) + 8 * len(f) for (rid, _), (f, _) in kept.items())
    assert store._dead_bytes < len(arena) // 2 and len(arena) >= live
    store._compact_arena()
    assert len(store.snapshot()["arena"]) == live
    for (rid, row), (features, prediction) in kept.items():
        found = store.get(store.find(rid, row))
        assert (found.request_id, found.features, found.prediction) == (rid, features, prediction)


def test_example_hashes_are_key_hash_for_runs_singletons_and_any_row() -> None:
    """The prefix-copy path gives ``key_hash``'s digests: runs of one request id, ids alone, rows past
    the suffix table, negative rows, non-ASCII ids, an id that comes back after another."""
    import itertools
    import random

    from driftloop_feedback.join.store import example_hashes

    rng = random.Random(7)
    ids = ["r-1", "r-2", "pompe-ü-7", "", "r-1"]
    items: list[tuple[str, int]] = []
    for request_id in ids:
        for _ in range(rng.choice([1, 1, 2, 5])):
            items.append((request_id, rng.choice([0, 1, 17, 1023, 1024, 5000, -3])))
    items.append(("alone", 3))
    assert len({rid for rid, _ in items}) >= 4 and any(a[0] == b[0] for a, b in itertools.pairwise(items))
    assert example_hashes(items) == [key_hash(rid, row) for rid, row in items]
    assert example_hashes([]) == []
    with_extra_fields = [(rid, row, 1.0, 2.0, 3.0) for rid, row in items]
    assert example_hashes(with_extra_fields) == [key_hash(rid, row) for rid, row in items]
