"""Pending predictions, stored compactly: numpy columns for the fixed fields, one byte arena for the
variable part (request id + features), and an open-addressing hash index keyed by a 64-bit hash of
``<request_id>:<row>``. No Python object is kept per pending prediction, so memory per entry is a few
columns plus the raw bytes (``bench/feedback.py`` measures it at 1M pending).

>>> store = PendingStore()
>>> slot = store.add("req-1", 0, features=[1.0, 2.0], prediction=3.5, event_time=10.0,
...                  arrived=10.0, endpoint="default", model_version="4")
>>> store.get(store.find("req-1", 0)).features
(1.0, 2.0)
>>> store.remove(slot); len(store)
0
"""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import struct
from array import array
from collections.abc import Sequence
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
from driftloop_feedback.join.hash_index import EMPTY as _INDEX_EMPTY
from driftloop_feedback.join.hash_index import TOMBSTONE as _INDEX_TOMBSTONE
from driftloop_feedback.join.hash_index import HashIndex

_kernel: ModuleType | None
try:  # the take and add loops in C, built by the package's build hook (hatch_build.py)
    from driftloop_feedback.join import _storekernel as _kernel
except ImportError:  # not built (a bare source tree): the Python loops below, the reference, run
    _kernel = None

_EMPTY = 0
_UUID_LEN = 0xFFFF  # rid_len marker: the request id is a canonical UUID stored as its 16 raw bytes
_FIELDS: dict[str, Any] = {
    "key": np.uint64,
    "event_time": np.float64,
    "target_time": np.float64,
    "arrived": np.float64,
    "prediction": np.float64,
    "asset": np.int32,
    "endpoint": np.uint16,
    "version": np.uint16,
    "row": np.uint32,
    "offset": np.uint64,
    "rid_len": np.uint16,
    "n_features": np.uint16,
}
# The columns live in ``array.array``s of the same types: reading or writing one element from Python
# costs a third of a numpy element access. Whole-column work (TTL scans, compaction) goes through
# zero-copy numpy views (``_view``); snapshots hold numpy copies, as before.
_TYPECODES = {name: np.dtype(dtype).char for name, dtype in _FIELDS.items()}


def _zeros(name: str, n: int) -> array[Any]:
    """Exactly ``n`` zeros (repetition allocates exactly; extend/frombytes over-allocate by 1/16)."""
    return array(_TYPECODES[name], [0]) * n


@functools.lru_cache(maxsize=64)
def _features(n: int) -> struct.Struct:
    s = struct.Struct(f"<{n}d")
    _UNPACK_FEATURES[n] = s.unpack_from
    return s


_UNPACK_FEATURES: dict[int, Any] = {}  # feature count -> its Struct's unpack_from (filled by _features)


_blake2b = hashlib.blake2b
_new_tuple = tuple.__new__


def example_hash(example_id: str) -> int:
    """A non-zero 64-bit hash of an example id ``<request_id>:<row>`` (0 marks an empty index slot)."""
    return int.from_bytes(_blake2b(example_id.encode(), digest_size=8).digest(), "little") or 1


@functools.lru_cache(maxsize=1 << 14)  # one item is hashed several times in a row (dedupe, find, mark)
def key_hash(request_id: str, row: int) -> int:
    """``example_hash`` of ``<request_id>:<row>``."""
    return example_hash(f"{request_id}:{row}")


ROW_SUFFIXES = tuple(str(row).encode() for row in range(1024))  # the ``<row>`` of most example ids


def example_hashes(items: Sequence[tuple[Any, ...]]) -> list[int]:
    """``key_hash(request_id, row)`` of each (request_id, row, ...) item. Where an item has the request
    id of the item before or after it (the rows of one request arrive together), ``<request_id>:`` is
    hashed once and blake2b's state copied per row: the same digests in about half the time."""
    blake2b, from_bytes, suffixes = _blake2b, int.from_bytes, ROW_SUFFIXES
    out: list[int] = []
    append = out.append
    n = len(items)
    last: Any = None
    prefix: Any = None
    for i in range(n):
        request_id, row = items[i][0], items[i][1]
        if request_id != last:
            if i + 1 == n or items[i + 1][0] != request_id:  # alone: hashed whole
                append(example_hash(f"{request_id}:{row}"))
                continue
            prefix = blake2b(f"{request_id}:".encode(), digest_size=8)
            last = request_id
        h = prefix.copy()
        h.update(suffixes[row] if 0 <= row < len(suffixes) else str(row).encode())
        append(from_bytes(h.digest(), "little") or 1)
    return out


class PendingPrediction(NamedTuple):
    """A pending prediction read back from the store (a named tuple: one is made per truth joined)."""

    request_id: str
    row: int
    features: tuple[float, ...]
    prediction: float
    event_time: float
    target_time: float
    arrived: float
    endpoint: str
    model_version: str
    asset_id: str | None

    @property
    def example_id(self) -> str:
        return f"{self.request_id}:{self.row}"


class Interner:
    """Small string <-> int tables (endpoints, model versions, asset ids)."""

    def __init__(self, values: Sequence[str] = ()) -> None:
        self.values: list[str] = list(values)
        self._ids = {v: i for i, v in enumerate(self.values)}

    def id(self, value: str) -> int:
        found = self._ids.get(value)
        if found is None:
            found = self._ids[value] = len(self.values)
            self.values.append(value)
        return found


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in canonical form (``str(uuid.UUID(value)) == value``)."""
    return len(value) == 36 and _CANONICAL_UUID.fullmatch(value) is not None


@functools.lru_cache(maxsize=1024)  # the rows of one request are added and found one after another
def _pack_request_id(request_id: str) -> tuple[bytes, int]:
    """The request id's bytes in the arena and its ``rid_len`` marker: canonical UUIDs (what Seldon's
    executor generates for ``Seldon-Puid``) take 16 bytes."""
    if _is_uuid(request_id):
        return bytes.fromhex(request_id.replace("-", "")), _UUID_LEN
    raw = request_id.encode()
    return raw, len(raw)


def _unpack_uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class PendingStore:
    native = _kernel is not None  # take and add rows in C (``_storekernel``), else in Python

    def __init__(self, capacity: int = 1024) -> None:
        self._cols: dict[str, array[Any]] = {name: _zeros(name, capacity) for name in _FIELDS}
        self._free = array("q", range(capacity - 1, -1, -1))
        self._arena = bytearray()
        self._dead_bytes = 0
        self._index = HashIndex(1 << max(1, (capacity * 2 - 1).bit_length()))
        self._count = 0
        self.endpoints = Interner()
        self.versions = Interner()
        self.assets = Interner()
        self._bind_columns()

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        cols = sum(c.itemsize * len(c) for c in self._cols.values())
        return cols + len(self._arena) + self._index.nbytes

    # -- public operations ---------------------------------------------------------------------
    def add(
        self,
        request_id: str,
        row: int,
        *,
        features: Sequence[float],
        prediction: float,
        event_time: float,
        arrived: float,
        endpoint: str,
        model_version: str,
        asset_id: str | None = None,
        target_time: float = 0.0,
        key: int | None = None,
    ) -> int:
        """``key``: ``key_hash(request_id, row)`` when the caller has it already."""
        if not self._free:
            self._grow()
        slot = self._free.pop()
        rid, rid_len = _pack_request_id(request_id)
        feats = _features(len(features)).pack(*features)
        cols = self._cols
        h = key_hash(request_id, row) if key is None else key
        self._index.put(h, slot)
        cols["key"][slot] = h
        cols["event_time"][slot] = event_time
        cols["target_time"][slot] = target_time
        cols["arrived"][slot] = arrived
        cols["prediction"][slot] = prediction
        cols["asset"][slot] = -1 if asset_id is None else self.assets.id(asset_id)
        cols["endpoint"][slot] = self.endpoints.id(endpoint)
        cols["version"][slot] = self.versions.id(model_version)
        cols["row"][slot] = row
        cols["offset"][slot] = len(self._arena)
        cols["rid_len"][slot] = rid_len
        cols["n_features"][slot] = len(feats) // 8
        self._arena += rid
        self._arena += feats
        self._count += 1
        return slot

    def add_rows(
        self,
        request_id: str,
        rows: list[int],
        keys: list[int],
        features: np.ndarray,
        predictions: list[float],
        event_times: list[float],
        *,
        arrived: float,
        endpoint: str,
        model_version: str,
    ) -> None:
        """``add`` for rows of one request (no asset, no target time), the same slots and bytes as one
        ``add`` per row in order, column by column. ``keys``: each row's ``key_hash``; ``features``:
        float64 [len(rows), F]."""
        k = len(rows)
        index = self._index
        if (
            self.native
            and _kernel is not None
            and len(self._free) >= k
            and (index.used + k) * 2 <= len(index.keys)
        ):
            # In C, where no slot or index room has to be made first: the same slots, bytes and index.
            free = self._free
            slots = free[len(free) - k :]  # as k pops
            slots.reverse()
            del free[len(free) - k :]
            rid, rid_len = _pack_request_id(request_id)
            index.used += _kernel.add_rows(
                slots,
                rid,
                rid_len,
                rows,
                keys,
                np.ascontiguousarray(features, dtype="<f8"),
                predictions,
                event_times,
                arrived,
                self.endpoints.id(endpoint),
                self.versions.id(model_version),
                self._take_cols,
                self._arena,
                index.keys,
                index.slots,
            )
            index.live += k
            self._count += k
            return
        # The Python loop (the reference), which also makes room first where the C one cannot.
        if len(self._free) < k:  # the store grows on the way: as one ``add`` per row would
            for j, (row, h) in enumerate(zip(rows, keys, strict=True)):
                self.add(
                    request_id,
                    row,
                    features=features[j].tolist(),
                    prediction=predictions[j],
                    event_time=event_times[j],
                    arrived=arrived,
                    endpoint=endpoint,
                    model_version=model_version,
                    key=h,
                )
            return
        free = self._free
        taken = np.frombuffer(free[len(free) - k :], dtype=np.int64)[::-1]  # as k pops
        del free[len(free) - k :]
        rid, rid_len = _pack_request_id(request_id)
        n_features = features.shape[1] if features.ndim == 2 else 0
        stride = len(rid) + 8 * n_features
        block = np.empty((k, stride), dtype=np.uint8)
        block[:, : len(rid)] = np.frombuffer(rid, dtype=np.uint8)
        block[:, len(rid) :] = np.ascontiguousarray(features, dtype="<f8").view(np.uint8).reshape(k, -1)
        start = len(self._arena)
        self._arena += block.tobytes()
        view = self._view
        view("key")[taken] = keys
        view("event_time")[taken] = event_times
        view("target_time")[taken] = 0.0
        view("arrived")[taken] = arrived
        view("prediction")[taken] = predictions
        view("asset")[taken] = -1
        view("endpoint")[taken] = self.endpoints.id(endpoint)
        view("version")[taken] = self.versions.id(model_version)
        view("row")[taken] = rows
        view("offset")[taken] = np.arange(start, start + k * stride, stride, dtype=np.uint64)[:k]
        view("rid_len")[taken] = rid_len
        view("n_features")[taken] = n_features
        self._index.put_many(keys, taken.tolist())
        self._count += k

    def index_slots(self) -> array[int]:
        """The index's slot array (``hash_index.EMPTY`` where no key was ever filed), valid until the
        next add: a caller may test ``slots[key & (len(slots) - 1)]`` before calling ``find``."""
        return self._index.slots

    def find(self, request_id: str, row: int, key: int | None = None) -> int:
        """The slot of a pending prediction, or -1 (``key``: its ``key_hash``, if known)."""
        if not self._count:
            return -1
        index = self._index
        h = key_hash(request_id, row) if key is None else key
        if index.slots[h & (len(index.slots) - 1)] == _INDEX_EMPTY:
            return -1  # the usual answer, without a probe
        slots = index.probe(h)
        if not slots:
            return -1
        packed, kind = _pack_request_id(request_id)
        cols = self._cols
        for slot in slots:
            start = cols["offset"][slot]
            if (
                cols["rid_len"][slot] == kind
                and cols["row"][slot] == row
                and self._arena[start : start + len(packed)] == packed
            ):
                return slot
        return -1

    def take(self, request_id: str, row: int, key: int) -> PendingPrediction | None:
        """``find`` + ``get`` + ``remove`` in one call: the pending prediction ``<request_id>:<row>``
        (``key``: its ``key_hash``) taken out of the store, or ``None``."""
        return self.take_many([(request_id, row, key)])[0]

    def take_many(self, wanted: Sequence[tuple[str, int, int]]) -> list[PendingPrediction | None]:
        """``take`` for each (request_id, row, key_hash) in order: what each found (``None`` if not
        pending, e.g. taken by an earlier item)."""
        if not self._count:
            return [None] * len(wanted)
        if not self.native or _kernel is None:
            return self._take_many_py(wanted)  # the reference
        index = self._index
        found, freed, dead = _kernel.take_many(
            wanted,
            index.keys,
            index.slots,
            self._take_cols,
            self._arena,
            self.endpoints.values,
            self.versions.values,
            self.assets.values,
            PendingPrediction,
        )
        taken = len(freed) // 8
        self._free.frombytes(freed)
        index.live -= taken
        self._count -= taken
        self._dead_bytes += dead
        if self._dead_bytes > 1 << 20 and self._dead_bytes > len(self._arena) // 2:
            self._compact_arena()
        return found

    def _take_many_py(self, wanted: Sequence[tuple[str, int, int]]) -> list[PendingPrediction | None]:
        index = self._index
        keys, slots = index.keys, index.slots
        mask = len(keys) - 1
        arena = self._arena
        endpoints, versions, assets = self.endpoints.values, self.versions.values, self.assets.values
        (
            c_key,
            c_rid_len,
            c_row,
            c_offset,
            c_n,
            c_asset,
            c_pred,
            c_event,
            c_target,
            c_arrived,
            c_end,
            c_ver,
        ) = self._take_cols
        free = self._free.append
        out: list[PendingPrediction | None] = []
        append = out.append
        taken = dead = 0
        for request_id, row, key in wanted:
            packed, kind = _pack_request_id(request_id)
            size = len(packed)
            pos = key & mask
            while True:
                slot = slots[pos]
                if slot == _INDEX_EMPTY:
                    break
                if slot >= 0 and keys[pos] == key:
                    start = c_offset[slot]
                    if c_rid_len[slot] == kind and c_row[slot] == row and arena.startswith(packed, start):
                        break
                pos = (pos + 1) & mask
            if slot == _INDEX_EMPTY:
                append(None)
                continue
            slots[pos] = _INDEX_TOMBSTONE
            n = c_n[slot]
            asset = c_asset[slot]
            unpack = _UNPACK_FEATURES.get(n) or _features(n).unpack_from
            append(
                _new_tuple(  # PendingPrediction(...) without the named tuple's Python-level __new__
                    PendingPrediction,
                    (
                        request_id,
                        row,
                        unpack(arena, start + size),
                        c_pred[slot],
                        c_event[slot],
                        c_target[slot],
                        c_arrived[slot],
                        endpoints[c_end[slot]],
                        versions[c_ver[slot]],
                        None if asset < 0 else assets[asset],
                    ),
                )
            )
            c_key[slot] = _EMPTY
            dead += size + 8 * n
            free(slot)
            taken += 1
        index.live -= taken
        self._count -= taken
        self._dead_bytes += dead
        if self._dead_bytes > 1 << 20 and self._dead_bytes > len(arena) // 2:
            self._compact_arena()
        return out

    def get(self, slot: int, request_id: str | None = None) -> PendingPrediction:
        """The prediction in ``slot``; ``request_id`` when the caller knows it (from ``find``)."""
        cols = self._cols
        n = cols["n_features"][slot]
        asset = cols["asset"][slot]
        return PendingPrediction(
            request_id=self._rid(slot) if request_id is None else request_id,
            row=cols["row"][slot],
            features=_features(n).unpack_from(self._arena, cols["offset"][slot] + self._rid_bytes(slot)),
            prediction=cols["prediction"][slot],
            event_time=cols["event_time"][slot],
            target_time=cols["target_time"][slot],
            arrived=cols["arrived"][slot],
            endpoint=self.endpoints.values[cols["endpoint"][slot]],
            model_version=self.versions.values[cols["version"][slot]],
            asset_id=None if asset < 0 else self.assets.values[asset],
        )

    def remove(self, slot: int) -> None:
        if slot < 0:
            raise IndexError(f"slot {slot} is not a pending prediction")
        h = self._cols["key"][slot]
        if h == _EMPTY:
            return
        self._index.remove(h, slot)
        self._cols["key"][slot] = _EMPTY
        self._dead_bytes += self._rid_bytes(slot) + 8 * self._cols["n_features"][slot]
        self._free.append(slot)
        self._count -= 1
        if self._dead_bytes > 1 << 20 and self._dead_bytes > len(self._arena) // 2:
            self._compact_arena()

    def arrived_before(self, cutoff: float) -> list[int]:
        """Slots of live entries that arrived at or before ``cutoff`` (TTL expiry)."""
        mask = (self._view("key") != _EMPTY) & (self._view("arrived") <= cutoff)
        return [int(s) for s in np.nonzero(mask)[0]]

    def target_time(self, slot: int) -> float:
        return self._cols["target_time"][slot]

    # -- snapshot ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Plain arrays and lists (cheap to pickle even at 1M entries)."""
        return {
            "cols": {name: self._view(name).copy() for name in self._cols},
            "free": self._free.tobytes(),
            "arena": bytes(self._arena),
            "dead_bytes": self._dead_bytes,
            "index": copy.deepcopy(self._index),
            "count": self._count,
            "endpoints": list(self.endpoints.values),
            "versions": list(self.versions.values),
            "assets": list(self.assets.values),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> PendingStore:
        store = cls(capacity=1)
        store._cols = {name: array(_TYPECODES[name], col.tobytes()) for name, col in state["cols"].items()}
        store._free = array("q")
        store._free.frombytes(state["free"])
        store._arena = bytearray(state["arena"])
        store._dead_bytes = state["dead_bytes"]
        store._index = state["index"].restore()
        store._count = state["count"]
        store.endpoints = Interner(state["endpoints"])
        store.versions = Interner(state["versions"])
        store.assets = Interner(state["assets"])
        store._bind_columns()
        return store

    def live_slots(self) -> list[int]:
        return [int(s) for s in np.nonzero(self._view("key") != _EMPTY)[0]]

    # -- internals -----------------------------------------------------------------------------
    def _bind_columns(self) -> None:
        """The columns ``take`` reads, in its order (again whenever a column is replaced)."""
        self._take_cols = tuple(
            self._cols[name]
            for name in (
                "key",
                "rid_len",
                "row",
                "offset",
                "n_features",
                "asset",
                "prediction",
                "event_time",
                "target_time",
                "arrived",
                "endpoint",
                "version",
            )
        )

    def _view(self, name: str) -> np.ndarray:
        """A numpy view of a column (valid until the column grows)."""
        return np.frombuffer(self._cols[name], dtype=_FIELDS[name])

    def _rid_bytes(self, slot: int) -> int:
        n = self._cols["rid_len"][slot]
        return 16 if n == _UUID_LEN else n

    def _rid(self, slot: int) -> str:
        start = self._cols["offset"][slot]
        raw = bytes(self._arena[start : start + self._rid_bytes(slot)])
        if self._cols["rid_len"][slot] == _UUID_LEN:
            return _unpack_uuid(raw)
        return raw.decode()

    def _grow(self) -> None:
        old = len(self._cols["key"])
        new = old * 2
        self._take_cols = ()  # so each old column is freed as soon as it is replaced
        for name, col in self._cols.items():
            grown = _zeros(name, new)
            grown[:old] = col
            self._cols[name] = grown
        self._bind_columns()
        self._free.extend(range(new - 1, old - 1, -1))

    def _compact_arena(self) -> None:
        """Copy the live entries' bytes, in slot order, into a new arena without the dead ones; numpy
        gathers them in chunks (one index per byte, so a chunk's index stays a few MB)."""
        live = np.nonzero(self._view("key") != _EMPTY)[0]
        starts = self._view("offset")[live].astype(np.int64)
        rid_len = self._view("rid_len")[live].astype(np.int64)
        sizes = np.where(rid_len == _UUID_LEN, 16, rid_len) + 8 * self._view("n_features")[live].astype(
            np.int64
        )
        offsets = np.cumsum(sizes) - sizes
        arena = bytearray(int(sizes.sum()))
        src = np.frombuffer(self._arena, dtype=np.uint8)
        dst = np.frombuffer(arena, dtype=np.uint8)
        chunk = 1 << 12
        for first in range(0, len(live), chunk):
            size, start, offset = (
                sizes[first : first + chunk],
                starts[first : first + chunk],
                offsets[first : first + chunk],
            )
            total = int(size.sum())
            within = np.arange(total, dtype=np.int64) - np.repeat(offset - offset[0], size)
            dst[offset[0] : offset[0] + total] = src[np.repeat(start, size) + within]
        del src, dst  # the arenas' buffers are exported while numpy views them
        self._view("offset")[live] = offsets
        self._arena = arena
        self._dead_bytes = 0
