"""The compact pending store and its hash index; the docstring examples of the feedback modules."""

from __future__ import annotations

import doctest
import importlib
import uuid

import pytest
from driftloop_feedback.join.store import PendingStore

MODULES = [
    "driftloop_feedback.join.store",
    "driftloop_feedback.join.hash_index",
    "driftloop_feedback.join.shard",
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
