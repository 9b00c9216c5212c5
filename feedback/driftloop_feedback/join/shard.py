"""The join state of one shard (= one partition index of the co-partitioned input topics).

Handlers, bytewax-style: an item arrived (``on_log_event``, ``on_truth``, ``on_prediction``,
``on_reading``), the timer fired (``on_timer(now)``: TTLs), and ``snapshot`` / ``restore``. Nothing
here reads a clock or does I/O: the worker passes the time in and drains ``labelled`` / ``forwarded``.

>>> from driftloop_feedback.records import PredictionRow, TruthRecord
>>> shard = JoinShard(JoinRules(mode="request"))
>>> row = PredictionRow("r1", 0, (1.0,), 2.0, 100.0, "default", "3")
>>> shard.on_prediction(row, logged_at=100.0)
>>> shard.on_truth(TruthRecord("r1", 0, 2.5, 101.0), logged_at=101.0)
>>> [(e.example_id, e.truth) for e in shard.drain_labelled()]
[('r1:0', 2.5)]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from driftloop_feedback.join.assembler import (
    AssembledRequest,
    PredictionAssembler,
    TensorNames,
    UnusableEvent,
)
from driftloop_feedback.join.asset_index import AssetState
from driftloop_feedback.join.hash_index import EMPTY as INDEX_EMPTY
from driftloop_feedback.join.resolved import EXPIRED, JOINED, ResolvedKeys
from driftloop_feedback.join.rules import JoinCounters, JoinRules
from driftloop_feedback.join.store import (
    ROW_SUFFIXES,
    PendingPrediction,
    PendingStore,
    example_hash,
    example_hashes,
    key_hash,
)
from driftloop_feedback.labelled_batch import decode_labelled, encode_tuples
from driftloop_feedback.records import LabelledExample, PredictionRow, Reading, TruthRecord

from driftloop.seldon_log import LogEvent

__all__ = ["EXPIRED", "JOINED", "JoinShard", "TruthItem"]

Row = PredictionRow | PendingPrediction  # a prediction as it arrived, or as stored while pending
TruthItem = tuple[str, int, float, float, float]  # request_id, row, truth, received_at, logged_at
ASSEMBLED = JOINED  # a request id's status in ``done_requests``
_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


class JoinShard:
    def __init__(self, rules: JoinRules, names: TensorNames | None = None) -> None:
        self.rules = rules
        self.store = PendingStore()
        self.assembler = PredictionAssembler(names)
        self.assets: dict[str, AssetState] = {}
        # example id -> (truth, truth time, logged_at, key hash); snapshots older than the hash hold 3-tuples
        self.truths: dict[str, tuple[Any, ...]] = {}
        self.resolved = ResolvedKeys()  # key hash -> JOINED/EXPIRED, for ttl_s after resolution
        # Request ids assembled here within ttl_s (by ``example_hash`` of the id), for dropping their
        # repeated events: typed arrays, so a checkpoint copies buffers and expiry is a bisection (a
        # dict of ids cost ~0.4 s to pickle per million requests at every checkpoint, and a full scan
        # at every timer tick).
        self.done_requests = ResolvedKeys()
        self.counters = JoinCounters()
        self.now = float("-inf")
        self._labelled: list[tuple[Any, ...]] = []  # the fields of each labelled example made
        self._forwarded: list[PredictionRow] = []

    # -- items ---------------------------------------------------------------------------------
    def on_log_event(self, event: LogEvent, logged_at: float) -> None:
        self._tick(logged_at)
        done = self.done_requests.status
        # An id still being assembled is not done: its events need no hash until it is.
        if done and event.request_id not in self.assembler.partial and example_hash(event.request_id) in done:
            self.counters.duplicate += 1
            return
        before = self.assembler.duplicates
        try:
            assembled = self.assembler.assemble(event, logged_at)
        except UnusableEvent:
            self.counters.malformed += 1
            self.assembler.partial.pop(event.request_id, None)
            return
        self.counters.duplicate += self.assembler.duplicates - before
        if assembled is None:
            return
        self.done_requests.mark(example_hash(event.request_id), ASSEMBLED, self.now)
        mode = self.rules.mode
        if mode == "request" or (mode == "auto" and assembled.asset_ids is None):
            self._on_request_rows(assembled)  # every row takes the request join
            return
        for row in assembled.rows():
            if self._routes_to_asset(row) and row.asset_id is not None:
                self._forwarded.append(row)
                self.counters.forwarded += 1
            else:
                self.on_prediction(row, logged_at)

    def on_prediction(self, row: PredictionRow, logged_at: float) -> None:
        if logged_at > self.now:
            self.now = logged_at
        if self._known(row.request_id, row.row):
            self.counters.duplicate += 1
            return
        if self.rules.mode == "request" or not self._routes_to_asset(row):
            example_id = f"{row.request_id}:{row.row}"
            truth = self.truths.pop(example_id, None)
            if truth is not None:
                self._emit(row, truth[0], truth[1], "request", example_id)
                return
            self._add_pending(row, logged_at, target=0.0)
            return
        if row.asset_id is None:
            self.counters.malformed += 1  # asset mode needs the asset_id tensor
            return
        asset_id = row.asset_id
        target = row.event_time + self._horizon(row)
        state = self.assets.setdefault(asset_id, AssetState())
        if target + self.rules.tolerance_s <= state.watermark(self.rules.allowed_lateness_s):
            self.counters.late += 1  # its window closed already: label from the readings kept
            self._resolve_asset(row, target, state)
            return
        slot = self._add_pending(row, logged_at, target=target)
        state.add_pending(target, slot)

    def on_truth(self, truth: TruthRecord, logged_at: float) -> None:
        self.on_truth_fields(truth.request_id, truth.row, truth.truth, truth.received_at, logged_at)

    def on_truth_fields(
        self, request_id: str, row: int, truth: float, received_at: float, logged_at: float
    ) -> None:
        """``on_truth`` from the record's fields, without a ``TruthRecord``."""
        self.on_truths(((request_id, row, truth, received_at, logged_at),))

    def on_truths(self, items: Sequence[TruthItem]) -> None:
        """``on_truth`` for a run of truths in arrival order, as (request_id, row, truth, received_at,
        logged_at) each, in one loop (the worker's path): one hash per truth; a truth whose prediction
        is pending takes it out of the store and makes its example, any other waits (or is counted)."""
        store, truths, resolved = self.store, self.truths, self.resolved
        status, labelled = resolved.status, self._labelled
        joined_keys: list[int] = []  # resolved in this call, marked below in one go (same order and time)
        joined_at: list[float] = []
        now = self.now
        duplicate = late = 0
        ids = [f"{request_id}:{row}" for request_id, row, *_ in items]
        hashes = example_hashes(items)
        # Each truth's pending prediction, taken out of the store (in order: a resent truth finds none).
        if len(store):
            found = store.take_many([(item[0], item[1], h) for item, h in zip(items, hashes, strict=True)])
        else:
            found = [None] * len(items)
        for (request_id, row, truth, received_at, logged_at), example_id, h, pending in zip(
            items, ids, hashes, found, strict=True
        ):
            if logged_at > now:
                now = logged_at
            if pending is not None:
                status[h] = JOINED  # visible at once: a resent truth later in this run is a duplicate
                joined_keys.append(h)
                joined_at.append(now)
                # the example's fields (``LabelledExample`` order), encoded a batch at a time when drained
                labelled.append(
                    (
                        example_id,
                        request_id,
                        row,
                        pending[2],
                        pending[3],
                        truth,
                        pending[7],
                        pending[8],
                        pending[4],
                        received_at,
                        "request",
                        pending[9],
                    )
                )
                continue
            was = status.get(h)
            if was == JOINED or example_id in truths:
                duplicate += 1
            elif was == EXPIRED:
                late += 1
            else:
                truths[example_id] = (truth, received_at, logged_at, h)
        self.now = now
        if joined_keys:
            resolved.add_marked(joined_keys, joined_at, JOINED)
        counters = self.counters
        counters.joined += len(joined_keys)
        counters.duplicate += duplicate
        counters.late += late

    def on_reading(self, reading: Reading, logged_at: float) -> None:
        self._tick(logged_at)
        value = reading.values.get(self.rules.truth_field)
        if value is None:
            self.counters.malformed += 1
            return
        state = self.assets.setdefault(reading.asset_id, AssetState())
        lateness = self.rules.allowed_lateness_s
        if reading.event_time < state.watermark(lateness):
            self.counters.late += 1
            return
        if state.has_reading_at(reading.event_time):
            self.counters.duplicate += 1
            return
        state.add_reading(reading.event_time, value)
        watermark = state.watermark(lateness)
        for target, slot in state.pop_due(watermark - self.rules.tolerance_s):
            pending = self.store.get(slot)
            self.store.remove(slot)
            self._resolve_asset(pending, target, state)
        state.forget_readings_before(watermark - self.rules.retention_s)

    # -- timer ---------------------------------------------------------------------------------
    def on_timer(self, now: float) -> None:
        """Expire what waited longer than ``ttl_s`` (log/processing time) for its other half."""
        self._tick(now)
        cutoff = self.now - self.rules.ttl_s
        expired_slots = set(self.store.arrived_before(cutoff))
        for slot in expired_slots:
            self._mark(key_hash(*self._slot_key(slot)), EXPIRED)
            self.store.remove(slot)
            self.counters.expired += 1
        if expired_slots:
            for state in self.assets.values():
                state.discard_pending(expired_slots)
        for example_id in [k for k, v in self.truths.items() if v[2] <= cutoff]:
            del self.truths[example_id]
            self.counters.orphan_truth += 1
        self.counters.incomplete += self.assembler.expire(cutoff)
        self.done_requests.expire(cutoff)
        self.resolved.expire(cutoff)

    # -- outputs and snapshots -------------------------------------------------------------------
    def drain_labelled(self) -> list[LabelledExample]:
        return [e for _, value in self.drain_encoded() for e in decode_labelled(value)]

    def drain_encoded(self) -> list[tuple[bytes | None, bytes]]:
        """The labelled examples made since the last drain, as batch records (``labelled_batch``, in
        the order made, each under its size cap): (Kafka key, value) each. A batch record has no key:
        it holds many request ids."""
        return [(None, value) for value in encode_tuples(self.drain_fields())]

    def drain_fields(self) -> list[tuple[Any, ...]]:
        """The labelled examples made since the last drain, as tuples of ``LabelledExample``'s fields."""
        out, self._labelled = self._labelled, []
        return out

    def drain_forwarded(self) -> list[PredictionRow]:
        out, self._forwarded = self._forwarded, []
        return out

    def snapshot(self) -> dict[str, Any]:
        if self._labelled or self._forwarded:
            raise RuntimeError("drain outputs before taking a snapshot")
        return {
            "store": self.store.snapshot(),
            "partial": self.assembler.partial,
            "assets": self.assets,
            "truths": self.truths,
            "resolved_keys": self.resolved.snapshot(),
            "done_request_keys": self.done_requests.snapshot(),
            "counters": self.counters,
            "now": self.now,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], rules: JoinRules, names: TensorNames | None = None) -> JoinShard:
        shard = cls(rules, names)
        shard.store = PendingStore.restore(state["store"])
        shard.assembler.partial = state["partial"]
        shard.assets = state["assets"]
        shard.truths = state["truths"]
        if "resolved_keys" in state:
            shard.resolved = ResolvedKeys.restore(state["resolved_keys"])
        else:  # written before ResolvedKeys: a dict and a deque of (time, key)
            shard.resolved = ResolvedKeys.from_legacy(state["resolved"], state["resolved_order"])
        if "done_request_keys" in state:
            shard.done_requests = ResolvedKeys.restore(state["done_request_keys"])
        else:  # written before: a dict of request id -> time assembled
            shard.done_requests = _done_requests_from_legacy(state["done_requests"])
        shard.counters = state["counters"]
        shard.now = state["now"]
        return shard

    # -- internals -----------------------------------------------------------------------------
    def _tick(self, t: float) -> None:
        self.now = max(self.now, t)

    def _routes_to_asset(self, row: PredictionRow) -> bool:
        if self.rules.mode == "request":
            return False
        has_horizon = row.horizon_s is not None or self.rules.default_horizon_s is not None
        if self.rules.mode == "asset":
            return True
        return row.asset_id is not None and has_horizon

    def _horizon(self, row: PredictionRow) -> float:
        return float(row.horizon_s if row.horizon_s is not None else self.rules.default_horizon_s or 0.0)

    def _known(self, request_id: str, row: int) -> bool:
        return key_hash(request_id, row) in self.resolved.status or self.store.find(request_id, row) >= 0

    def _add_pending(self, row: PredictionRow, logged_at: float, target: float) -> int:
        return self.store.add(
            row.request_id,
            row.row,
            features=row.features,
            prediction=row.prediction,
            event_time=row.event_time,
            arrived=logged_at,
            endpoint=row.endpoint,
            model_version=row.model_version,
            asset_id=row.asset_id,
            target_time=target,
        )

    def _resolve_asset(self, row: Row, target: float, state: AssetState) -> None:
        found = state.nearest(target, self.rules.tolerance_s)
        if found is None:
            self._mark(key_hash(row.request_id, row.row), EXPIRED)
            self.counters.unmatched += 1
            return
        self._emit(row, found[1], found[0], "asset")

    def _on_request_rows(self, req: AssembledRequest) -> None:
        """``on_prediction`` for every row of a request that takes the request join, in one loop:
        one hash, one truth lookup and, if the truth was waiting, one encoded example per row."""
        logged_at = req.logged_at
        if logged_at > self.now:
            self.now = logged_at
        rid, endpoint, version = req.request_id, req.endpoint, req.model_version
        predictions, times = req.predictions, req.event_times
        n_times = len(times)
        truths, status, store = self.truths, self.resolved.status, self.store
        labelled = self._labelled
        blake2b, from_bytes = _blake2b, _from_bytes
        # Rows of one request have distinct ids: only rows stored before this call can repeat them.
        find = store.find if len(store) else None
        # The store's index, read inline: a row whose first index slot is empty is not pending (the
        # usual answer, without a call); the index does not change before the rows are added below.
        index_slots = store.index_slots()
        index_mask = len(index_slots) - 1
        # More than one row: "<request_id>:" hashed once, blake2b's state copied per row.
        prefix = blake2b(f"{rid}:".encode(), digest_size=8) if len(req.features) > 1 else None
        suffixes, n_suffixes = ROW_SUFFIXES, len(ROW_SUFFIXES)
        duplicate = 0
        joined: list[int] = []  # their keys
        waiting: list[int] = []
        waiting_keys: list[int] = []
        for i, features in enumerate(req.features):
            example_id = f"{rid}:{i}"
            truth = truths.pop(example_id, None) if truths else None
            if truth is not None and len(truth) > 3:
                h = truth[3]  # the truth waiting for this row was hashed when it arrived
            elif prefix is None:  # example_hash, inline
                h = from_bytes(blake2b(example_id.encode(), digest_size=8).digest(), "little") or 1
            else:  # the same digest from the request's hashed prefix (``example_hashes``)
                state = prefix.copy()
                state.update(suffixes[i] if i < n_suffixes else str(i).encode())
                h = from_bytes(state.digest(), "little") or 1
            if h in status or (
                find is not None and index_slots[h & index_mask] != INDEX_EMPTY and find(rid, i, h) >= 0
            ):
                duplicate += 1
                if truth is not None:
                    truths[example_id] = truth  # as on_prediction: a duplicate leaves it waiting
                continue
            if truth is None:  # waits in the store: added below, the request's rows in one call
                waiting.append(i)
                waiting_keys.append(h)
                continue
            joined.append(h)
            # the example's fields (``LabelledExample`` order), encoded a batch at a time when drained
            labelled.append(
                (
                    example_id,
                    rid,
                    i,
                    features,
                    predictions[i],
                    truth[0],
                    endpoint,
                    version,
                    times[i] if i < n_times else logged_at,
                    truth[1],
                    "request",
                    None,
                )
            )
        if joined:
            self.resolved.mark_many(joined, JOINED, self.now)
            self.counters.joined += len(joined)
        if waiting:
            self._add_waiting(req, waiting, waiting_keys)
        self.counters.duplicate += duplicate

    def _add_waiting(self, req: AssembledRequest, rows: list[int], keys: list[int]) -> None:
        matrix, times, n_times = req.feature_matrix, req.event_times, len(req.event_times)
        event_times = [times[i] if i < n_times else req.logged_at for i in rows]
        if matrix is None or matrix.ndim != 2:
            for i, h, event_time in zip(rows, keys, event_times, strict=True):
                self.store.add(
                    req.request_id,
                    i,
                    features=req.features[i],
                    prediction=req.predictions[i],
                    event_time=event_time,
                    arrived=req.logged_at,
                    endpoint=req.endpoint,
                    model_version=req.model_version,
                    key=h,
                )
            return
        self.store.add_rows(
            req.request_id,
            rows,
            keys,
            matrix if len(rows) == len(matrix) else matrix[rows],
            [req.predictions[i] for i in rows],
            event_times,
            arrived=req.logged_at,
            endpoint=req.endpoint,
            model_version=req.model_version,
        )

    def _emit(
        self,
        row: Row,
        truth: float,
        truth_time: float,
        joined_by: str,
        example_id: str | None = None,
        h: int | None = None,
    ) -> None:
        if h is None:
            h = key_hash(row.request_id, row.row)
        self.resolved.mark(h, JOINED, self.now)
        self.counters.joined += 1
        self._labelled.append(
            (
                example_id or f"{row.request_id}:{row.row}",
                row.request_id,
                row.row,
                row.features,
                row.prediction,
                truth,
                row.endpoint,
                row.model_version,
                row.event_time,
                truth_time,
                joined_by,
                row.asset_id,
            )
        )

    def _mark(self, h: int, status: int) -> None:
        self.resolved.mark(h, status, self.now)

    def _slot_key(self, slot: int) -> tuple[str, int]:
        pending = self.store.get(slot)
        return pending.request_id, pending.row


def _done_requests_from_legacy(done: dict[str, float]) -> ResolvedKeys:
    """``done_requests`` from a snapshot that held them as a dict of request id -> time assembled."""
    keys = ResolvedKeys()
    for at, request_id in sorted((t, rid) for rid, t in done.items()):
        key = example_hash(request_id)
        if key not in keys.status:
            keys.mark(key, ASSEMBLED, at)
    return keys
