"""The pending store's C loops (``_storekernel``: ``take_many``, ``add_rows``) against its Python
reference: the same results and the same state, byte for byte, over random work; and what the C code
does with a state that does not hold together, and with its memory."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from typing import Any

import numpy as np
import pytest
from driftloop_feedback.join.store import PendingStore, key_hash


def _pair() -> tuple[PendingStore, PendingStore]:
    native, python = PendingStore(capacity=4), PendingStore(capacity=4)
    python.native = False
    return native, python


def _state(store: PendingStore) -> dict[str, Any]:
    snap = store.snapshot()
    index = snap.pop("index")
    cols = snap.pop("cols")
    return {
        **snap,
        "cols": {name: col.tobytes() for name, col in cols.items()},
        "index": (bytes(index.keys), bytes(index.slots), index.used, index.live),
    }


def test_the_store_kernel_is_built_and_used() -> None:
    """``make setup`` builds it (hatch_build.py): the store must not fall back to Python silently."""
    assert PendingStore.native


@pytest.mark.parametrize("seed", range(5))
def test_native_take_and_add_leave_the_python_references_state(seed: int) -> None:
    """Random requests added (UUID and plain ids, 0-9 features, several endpoints and versions), taken
    in random order with misses, repeats and forced hash collisions; through growth, rehashing and
    arena compaction. After every call both stores hold the same bytes and return the same rows."""
    rng = random.Random(seed)
    native, python = _pair()
    requests: list[tuple[str, list[int]]] = []
    for step in range(600):
        if rng.random() < 0.55 or not requests:
            rid = str(uuid.uuid4()) if rng.random() < 0.7 else f"req-{step}-ü"
            rows = sorted(rng.sample(range(120), rng.randint(1, 40)))
            n_features = rng.choice([0, 1, 8, 9])
            features = np.asarray([[rng.uniform(-1e6, 1e6) for _ in range(n_features)] for _ in rows])
            features = features.reshape(len(rows), n_features)
            keys = [key_hash(rid, r) for r in rows]
            if rng.random() < 0.1:
                keys = [0xC0FFEE] * len(rows)  # every row under one hash: found by request id and row
            args = (rid, rows, keys, features, [rng.random() for _ in rows], [float(r) for r in rows])
            kwargs = {"arrived": float(step), "endpoint": rng.choice(["main", "canary"]),
                      "model_version": str(rng.randint(1, 3))}  # fmt: skip
            native.add_rows(*args, **kwargs)
            python.add_rows(*args, **kwargs)
            requests.append((rid, rows))
            collided = keys[0] == 0xC0FFEE
            if collided:
                requests[-1] = (rid, [-1 - r for r in rows])  # marks: take them with the forced key
        else:
            rid, rows = requests.pop(rng.randrange(len(requests)))
            wanted = []
            for r in rows:
                row, key = (-1 - r, 0xC0FFEE) if r < 0 else (r, key_hash(rid, r))
                wanted.append((rid, row, key))
                if rng.random() < 0.1:
                    wanted.append((rid, row, key))  # a repeat finds nothing the second time
            wanted.append((rid, 999, key_hash(rid, 999)))  # never added
            rng.shuffle(wanted)
            assert native.take_many(wanted) == python.take_many(wanted)
        assert _state(native) == _state(python)
    assert len(native) == len(python) > 0


def _filled(n: int = 50, rid: str | None = None) -> tuple[PendingStore, str]:
    store = PendingStore(capacity=64)
    rid = rid or str(uuid.uuid4())
    rows = list(range(n))
    store.add_rows(rid, rows, [key_hash(rid, r) for r in rows], np.ones((n, 8)), [1.0] * n, [2.0] * n,
                   arrived=3.0, endpoint="main", model_version="1")  # fmt: skip
    return store, rid


def test_a_state_that_does_not_hold_together_raises_instead_of_reading_outside_it() -> None:
    store, rid = _filled()
    index = store._index
    pos = index.slots.index(store.find(rid, 7))
    index.slots[pos] = 10**6  # a slot past the columns
    with pytest.raises(ValueError, match="past the store's columns"):
        store.take_many([(rid, 7, key_hash(rid, 7))])
    store, rid = _filled()
    del store._arena[len(store._arena) - 8 :]  # the last row's last feature is gone
    with pytest.raises(ValueError, match="past the arena"):
        store.take_many([(rid, 49, key_hash(rid, 49))])
    with pytest.raises(TypeError):
        store.take_many([(rid, 1)])  # type: ignore[list-item]


def test_take_and_add_do_not_leak() -> None:
    """Rounds of adding and taking 50 rows after a warm-up: the memory Python allocates stays flat. One
    request id throughout: ``key_hash`` and ``_pack_request_id`` cache what they saw."""
    rid = str(uuid.uuid4())

    def round_trip() -> None:
        store, _ = _filled(rid=rid)
        found = store.take_many([(rid, r, key_hash(rid, r)) for r in range(51)])
        assert sum(f is not None for f in found) == 50

    for _ in range(20):
        round_trip()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(300):
            round_trip()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 256 * 1024, f"grew {end - start} bytes over 300 rounds"
