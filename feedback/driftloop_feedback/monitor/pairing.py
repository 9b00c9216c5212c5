"""Pair the model node's request and response events of one call (by request id) into a ``ModelCall``.

The request event carries the features (``features`` [N, F]) and the outlier node's ``outlier_flag``
(Seldon's executor renames the outlier node's outputs to the model's inputs); the response carries the
served ``model_version``. Events of other nodes are skipped, Seldon's duplicates (same requestid,
modelid and type) are dropped, and every event that does not become part of a call is counted by
reason: nothing is dropped silently. Pending requests are bounded in number and age.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, LogEvent

# Reasons an event is skipped / a request stays unpaired (metric labels).
SKIP_NOT_INFERENCE = "not_inference"
SKIP_OTHER_NODE = "other_node"
SKIP_DUPLICATE = "duplicate"
SKIP_UNUSABLE = "unusable"
SKIP_LATE = "late"  # the other half of a request already given up (expired or evicted)
UNPAIRED_EXPIRED = "expired"
UNPAIRED_EVICTED = "evicted"


@dataclass(frozen=True)
class ModelCall:
    """One call's rows as the model saw them, and the version that answered."""

    request_id: str
    endpoint: str
    model_version: str
    features: np.ndarray  # float64 [N, F]
    outlier_flags: np.ndarray | None  # bool [N], None when the call carried none
    event_ms: int  # log time of the later of the two events


@dataclass
class _Half:
    first_seen: float
    event_ms: int
    endpoint: str = ""
    features: np.ndarray | None = None
    flags: np.ndarray | None = None
    version: str | None = None
    response_flags: np.ndarray | None = None
    types: set[str] = field(default_factory=set)


class UnusablePayload(ValueError):
    """The payload is not V2 JSON, or its tensors do not fit."""


def _tensor(body: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    for tensor in body.get(section) or ():
        if isinstance(tensor, dict) and tensor.get("name") == name:
            return tensor
    return None


def _body(event: LogEvent) -> dict[str, Any]:
    try:
        body = orjson.loads(event.payload)
    except orjson.JSONDecodeError as exc:
        raise UnusablePayload(f"payload is not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise UnusablePayload("payload is not a V2 JSON object")
    return body


def _flags(tensor: dict[str, Any] | None) -> np.ndarray | None:
    if tensor is None:
        return None
    try:
        return np.asarray(tensor.get("data"), dtype=bool).reshape(-1)
    except (ValueError, TypeError):
        return None


def _request_tensor(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A tensor of the model node's logged request: under ``inputs``, or under ``outputs`` when the
    node is chained: Seldon's executor logs a node's request before ``Chain`` renames the previous
    node's ``outputs`` to ``inputs`` (predictor_process.go), and the local runtime does the same."""
    return _tensor(body, "inputs", name) or _tensor(body, "outputs", name)


def _features(body: dict[str, Any], name: str) -> np.ndarray:
    tensor = _request_tensor(body, name)
    if tensor is None:
        raise UnusablePayload(f"the model's request has no {name!r} input")
    try:
        flat = np.asarray(tensor.get("data"), dtype=np.float64).reshape(-1)
        shape = tensor.get("shape") or [1, flat.size]
        rows = int(shape[0])
        matrix = flat.reshape(rows, -1) if rows else flat.reshape(0, 0)
    except (ValueError, TypeError, IndexError) as exc:
        raise UnusablePayload(f"input {name!r} is not a numeric [N, F] tensor ({exc})") from exc
    return matrix


class CallPairer:
    """Request/response pairing state: pending halves (bounded) and recently paired request ids."""

    def __init__(
        self,
        *,
        model_node: str,
        features_tensor: str = "features",
        outlier_flag_tensor: str = "outlier_flag",
        pair_ttl_s: float = 120.0,
        max_pending: int = 100_000,
        dedupe_memory: int = 100_000,
    ) -> None:
        self.model_node = model_node
        self.features_tensor = features_tensor
        self.outlier_flag_tensor = outlier_flag_tensor
        self.pair_ttl_s = pair_ttl_s
        self.max_pending = max_pending
        self.dedupe_memory = dedupe_memory
        self.pending: OrderedDict[str, _Half] = OrderedDict()
        # request id -> what became of it: a later event of it is a duplicate, unusable or late
        self.done: OrderedDict[str, str] = OrderedDict()
        self.skipped: Counter[str] = Counter()
        self.unpaired: Counter[str] = Counter()

    def on_event(self, event: LogEvent, event_ms: int, now: float) -> ModelCall | None:
        """The call once both halves of the model node's exchange are known, else ``None``."""
        if event.type not in (TYPE_REQUEST, TYPE_RESPONSE):
            self.skipped[SKIP_NOT_INFERENCE] += 1
            return None
        if event.model_id != self.model_node:
            self.skipped[SKIP_OTHER_NODE] += 1
            return None
        rid = event.request_id
        finished = self.done.get(rid)
        if finished is not None:
            self.skipped[finished] += 1
            return None
        half = self.pending.get(rid)
        if half is not None and event.type in half.types:
            self.skipped[SKIP_DUPLICATE] += 1
            return None
        try:
            body = _body(event)
            if half is None:
                half = self._open(rid, now, event_ms)
            half.types.add(event.type)
            half.event_ms = max(half.event_ms, event_ms)
            if event.type == TYPE_REQUEST:
                half.features = _features(body, self.features_tensor)
                half.flags = _flags(_request_tensor(body, self.outlier_flag_tensor))
                half.endpoint = event.endpoint
            else:
                params = body.get("parameters") or {}
                half.version = str(body.get("model_version") or params.get("model_version") or "")
                half.response_flags = _flags(_tensor(body, "outputs", self.outlier_flag_tensor))
                half.endpoint = half.endpoint or event.endpoint
        except UnusablePayload:
            self.skipped[SKIP_UNUSABLE] += 1
            self.pending.pop(rid, None)
            self._finish(rid, SKIP_UNUSABLE)
            raise
        if half.features is None or half.version is None:
            return None
        del self.pending[rid]
        self._finish(rid, SKIP_DUPLICATE)
        flags = half.flags if half.flags is not None else half.response_flags
        if flags is not None and flags.shape[0] != half.features.shape[0]:
            flags = None
        return ModelCall(rid, half.endpoint, half.version, half.features, flags, half.event_ms)

    def expire(self, now: float) -> int:
        """Forget requests waiting longer than ``pair_ttl_s``; each is counted as unpaired."""
        cutoff = now - self.pair_ttl_s
        expired = 0
        while self.pending:
            rid, half = next(iter(self.pending.items()))
            if half.first_seen > cutoff:
                break
            del self.pending[rid]
            self._finish(rid, SKIP_LATE)
            expired += 1
        self.unpaired[UNPAIRED_EXPIRED] += expired
        return expired

    def _open(self, rid: str, now: float, event_ms: int) -> _Half:
        while len(self.pending) >= self.max_pending:
            old, _ = self.pending.popitem(last=False)
            self._finish(old, SKIP_LATE)
            self.unpaired[UNPAIRED_EVICTED] += 1
        half = self.pending[rid] = _Half(first_seen=now, event_ms=event_ms)
        return half

    def _finish(self, rid: str, fate: str) -> None:
        self.done[rid] = fate
        while len(self.done) > self.dedupe_memory:
            self.done.popitem(last=False)

    # -- snapshot ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": [(rid, vars(half).copy()) for rid, half in self.pending.items()],
            "done": list(self.done.items()),
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.pending = OrderedDict((rid, _Half(**fields)) for rid, fields in saved["pending"])
        self.done = OrderedDict(saved["done"])
