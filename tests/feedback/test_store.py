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
