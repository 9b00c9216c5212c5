"""Turn Seldon request-logger events into prediction rows.

A graph call logs one request and one response event per logged node (Seldon's executor; the local
runtime writes the same). The features come from a request event carrying the features tensor (every
node of the reference graph passes its inputs through unchanged, so the first that arrives is used),
the prediction from the response that carries the prediction tensor (the MODEL node's): a regressor's
value or a classifier's numeric class label (the pending store keeps one float per prediction, so a
classifier served with string classes is counted malformed, and its probabilities are not carried).
Events repeated with the same (requestid, modelid, type) are duplicates. A request id whose rows were
already assembled is remembered by the caller (``JoinShard``), which drops its later events as
duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from driftloop_feedback.records import PredictionRow

from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, LogEvent


@dataclass(frozen=True)
class TensorNames:
    features: str = "features"
    prediction: str = "prediction"
    asset_id: str = "asset_id"
    event_time: str = "event_time"


class UnusableEvent(ValueError):
    """A request-log event whose payload is not V2 JSON or whose tensors do not fit."""


@dataclass
class _Partial:
    first_seen: float
    seen: set[tuple[str, str]] = field(default_factory=set)
    features: np.ndarray | None = None
    asset_ids: list[str] | None = None
    event_times: list[float] | None = None
    response: LogEvent | None = None
    response_body: dict[str, Any] | None = None
    # The last payload decoded and its body: a graph's nodes pass the same request on (and a
    # transformer's response is its successor's request), so equal payloads are decoded once.
    last_payload: bytes | None = None
    last_body: Any = None


@dataclass
class AssembledRequest:
    """The rows of one request, by column (``rows()`` makes them ``PredictionRow``s)."""

    request_id: str
    features: list[list[float]]  # one list per row
    predictions: list[float]
    event_times: list[float]  # may be shorter than the rows: the rest were made at ``logged_at``
    endpoint: str
    model_version: str
    asset_ids: list[str] | None
    horizon_s: float | None
    logged_at: float
    feature_matrix: np.ndarray | None = None  # ``features`` as float64 [N, F]

    def rows(self) -> list[PredictionRow]:
        assets = self.asset_ids or []
        times = self.event_times
        rid, logged_at = self.request_id, self.logged_at
        return [
            PredictionRow(
                rid,
                i,
                tuple(feats),
                self.predictions[i],
                times[i] if i < len(times) else logged_at,
                self.endpoint,
                self.model_version,
                assets[i] if i < len(assets) else None,
                self.horizon_s,
                logged_at,
            )
            for i, feats in enumerate(self.features)
        ]


def _tensor(body: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    for tensor in body.get(section) or ():
        if isinstance(tensor, dict) and tensor.get("name") == name:
            return tensor
    return None


def _flat(tensor: dict[str, Any]) -> list[Any]:
    data = tensor.get("data")
    arr = np.asarray(data, dtype=object).reshape(-1)
    return list(arr)


def _numeric_predictions(request_id: str, name: str, tensor: dict[str, Any]) -> list[float]:
    """The prediction tensor as floats: a regressor's values, or a classifier's numeric class labels
    (INT64/FP64/BOOL). String class labels (BYTES) are refused: the pending store keeps a float per
    prediction (docs/feedback.md)."""
    if tensor.get("datatype") == "BYTES":
        raise UnusableEvent(
            f"request {request_id}: tensor {name!r} holds string class labels (BYTES); the joiner joins "
            "numeric predictions only: serve the classifier with numeric classes"
        )
    try:
        return [float(p) for p in _flat(tensor)]
    except (TypeError, ValueError) as exc:
        raise UnusableEvent(
            f"request {request_id}: tensor {name!r} holds a value that is not a number ({exc})"
        ) from exc


class PredictionAssembler:
    """Joins the request and response events of one request id into rows (state: partial requests)."""

    def __init__(self, names: TensorNames | None = None) -> None:
        self.names = names or TensorNames()
        self.partial: dict[str, _Partial] = {}
        self.duplicates = 0
        self.ignored = 0

    def on_event(self, event: LogEvent, logged_at: float) -> list[PredictionRow] | None:
        """Rows once both halves of a request are known, else ``None``. Raises ``UnusableEvent``."""
        assembled = self.assemble(event, logged_at)
        return None if assembled is None else assembled.rows()

    def assemble(self, event: LogEvent, logged_at: float) -> AssembledRequest | None:
        """``on_event`` by column: the request once both halves are known, else ``None``."""
        if event.type not in (TYPE_REQUEST, TYPE_RESPONSE):
            self.ignored += 1
            return None
        state = self.partial.get(event.request_id)
        if state is None:
            state = self.partial[event.request_id] = _Partial(first_seen=logged_at)
        node_key = (event.model_id, event.type)
        if node_key in state.seen:
            self.duplicates += 1
            return None
        state.seen.add(node_key)
        if event.payload == state.last_payload:
            body = state.last_body
        else:
            try:
                body = orjson.loads(event.payload)
            except orjson.JSONDecodeError as exc:
                raise UnusableEvent(f"request {event.request_id}: payload is not JSON ({exc})") from exc
            state.last_payload, state.last_body = event.payload, body
        if not isinstance(body, dict):
            raise UnusableEvent(f"request {event.request_id}: payload is not a V2 JSON object")
        if event.type == TYPE_REQUEST:
            self._take_request(state, event, body)
        elif state.response is None and _tensor(body, "outputs", self.names.prediction) is not None:
            state.response, state.response_body = event, body
        if state.features is None or state.response is None:
            return None
        del self.partial[event.request_id]
        return self._assembled(state, logged_at)

    def expire(self, cutoff: float) -> int:
        """Forget partial requests first seen at or before ``cutoff``; returns how many."""
        stale = [rid for rid, p in self.partial.items() if p.first_seen <= cutoff]
        for rid in stale:
            del self.partial[rid]
        return len(stale)

    def _take_request(self, state: _Partial, event: LogEvent, body: dict[str, Any]) -> None:
        if state.features is not None:
            return
        tensor = _tensor(body, "inputs", self.names.features)
        if tensor is None:
            return
        try:
            flat = np.asarray(tensor.get("data"), dtype=np.float64).reshape(-1)
            rows = int(tensor.get("shape", [len(flat)])[0]) if flat.size else 0
            state.features = flat.reshape(rows, -1) if rows else flat.reshape(0, 0)
        except (ValueError, TypeError) as exc:
            raise UnusableEvent(
                f"request {event.request_id}: tensor {self.names.features!r} is not numeric [N,F] ({exc})"
            ) from exc
        assets = _tensor(body, "inputs", self.names.asset_id)
        if assets is not None:
            state.asset_ids = [a.decode() if isinstance(a, bytes) else str(a) for a in _flat(assets)]
        times = _tensor(body, "inputs", self.names.event_time)
        if times is not None:
            state.event_times = [float(t) for t in _flat(times)]

    def _assembled(self, state: _Partial, logged_at: float) -> AssembledRequest:
        assert state.features is not None and state.response is not None and state.response_body
        body = state.response_body
        tensor = _tensor(body, "outputs", self.names.prediction)
        assert tensor is not None
        rid = state.response.request_id
        predictions = _numeric_predictions(rid, self.names.prediction, tensor)
        n = state.features.shape[0]
        if len(predictions) != n:
            raise UnusableEvent(
                f"request {rid}: {len(predictions)} predictions for {n} feature rows; cannot pair them"
            )
        params = body.get("parameters") or {}
        version = str(body.get("model_version") or params.get("model_version") or "")
        horizon = params.get("horizon_s")
        return AssembledRequest(
            request_id=rid,
            features=state.features.tolist(),  # Python floats, one list per row, in one call
            predictions=predictions,
            event_times=state.event_times or [],
            endpoint=state.response.endpoint,
            model_version=version,
            asset_ids=state.asset_ids,
            horizon_s=None if horizon is None else float(horizon),
            logged_at=logged_at,
            feature_matrix=state.features,
        )
