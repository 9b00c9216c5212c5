"""Test plumbing for the drift monitor: a fake clock, an in-memory reference source, request-log events
shaped as the local runtime writes them (MLServer's JSON, Seldon's headers, no key), and simulator pools
before and after a regime change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from driftloop.eventlog import Producer, send_many
from driftloop.learning.features import FeatureSpec, build_features
from driftloop.references import DriftReference
from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, LogEvent
from driftloop.telemetry import SimulatorSettings, simulate_fleet

FEATURES = ("load_pct", "speed_rpm", "ambient_c", "vibration_mm_s", "bearing_temp_c", "lag", "hsin", "hcos")


class FakeClock:
    def __init__(self, start: float = 1_767_225_600.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class DictReferences:
    """A ``ReferenceSource`` over a dict of version -> reference; counts look-ups."""

    refs: dict[str, DriftReference] = field(default_factory=dict)
    fallback_detector: Any = None
    lookups: int = 0

    def reference(self, version: str) -> DriftReference:
        self.lookups += 1
        if version not in self.refs:
            raise LookupError(f"version {version} has no drift-reference artifact")
        return self.refs[version]

    def fallback(self, version: str) -> tuple[object, tuple[str, ...] | None, str]:
        if self.fallback_detector is None:
            raise LookupError("models:/pump-bearing-temp-drift@champion does not exist")
        return self.fallback_detector, None, "models:/pump-bearing-temp-drift/1"


def reference(data: np.ndarray, names: Sequence[str] | None = None) -> DriftReference:
    names = names or [f"x{j}" for j in range(data.shape[1])]
    return DriftReference(np.asarray(data, dtype=np.float64), tuple(names))


def _tensor(name: str, datatype: str, shape: list[int], data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def call_events(
    request_id: str,
    features: np.ndarray,
    *,
    version: str = "1",
    endpoint: str = "default",
    flags: Sequence[bool] | None = None,
    model_node: str = "bearing-temp",
    outlier_node: str = "bearing-outlier",
) -> list[LogEvent]:
    """The four events the local runtime logs for one call of the graph outlier -> model, with the
    payloads MLServer writes (the outlier node's outputs become the model's inputs)."""
    n, f = features.shape
    flags = [False] * n if flags is None else list(flags)
    inputs = [_tensor("features", "FP64", [n, f], features.ravel().tolist())]
    request = {"inputs": inputs}
    outlier_out = {
        "model_name": outlier_node,
        "outputs": [
            *inputs,
            _tensor("outlier_flag", "BOOL", [n], flags),
            _tensor("outlier_score", "FP64", [n], [0.5] * n),
        ],
    }
    model_in = {"inputs": outlier_out["outputs"]}
    model_out = {
        "model_name": model_node,
        "model_version": version,
        "parameters": {"model_version": version, "model_uri": f"models:/pump-bearing-temp/{version}"},
        "outputs": [
            _tensor("prediction", "FP64", [n], [40.0] * n),
            _tensor("outlier_flag", "BOOL", [n], flags),
        ],
    }

    def ev(kind: str, node: str, body: dict[str, Any]) -> LogEvent:
        return LogEvent(
            type=kind,
            request_id=request_id,
            model_id=node,
            deployment="pump-bearing-temp",
            namespace="default",
            endpoint=endpoint,
            protocol="v2",
            content_type="application/json",
            payload=orjson.dumps(body),
        )

    return [
        ev(TYPE_REQUEST, outlier_node, request),
        ev(TYPE_RESPONSE, outlier_node, outlier_out),
        ev(TYPE_REQUEST, model_node, model_in),
        ev(TYPE_RESPONSE, model_node, model_out),
    ]


class RequestLogWriter:
    """Writes events as the local runtime's request logger does: keyless, a batch per partition in
    turn, Seldon's headers (``RequestLogger._write``)."""

    def __init__(self, producer: Producer, partitions: int, topic: str = "seldon") -> None:
        self.producer = producer
        self.partitions = partitions
        self.topic = topic
        self.turn = 0

    def write(self, events: Sequence[LogEvent], timestamp_ms: int | None = None) -> None:
        partition = self.turn % self.partitions
        self.turn += 1
        send_many(
            self.producer,
            self.topic,
            [(None, e.payload) for e in events],
            partition=partition,
            headers=[e.headers() for e in events],
            timestamps_ms=[timestamp_ms] * len(events),
        )
        self.producer.flush()

    def calls(
        self,
        rows: np.ndarray,
        *,
        rows_per_call: int,
        prefix: str,
        start_ms: int,
        step_ms: int = 10,
        **kw: Any,
    ) -> None:
        """Write ``rows`` as consecutive calls of ``rows_per_call`` rows, ``step_ms`` of log time apart."""
        for i, start in enumerate(range(0, len(rows), rows_per_call)):
            events = call_events(f"{prefix}-{i}", rows[start : start + rows_per_call], **kw)
            self.write(events, start_ms + i * step_ms)


@dataclass(frozen=True)
class RegimePools:
    """Feature rows of a simulated fleet: the reference, other rows of the same regime, and rows after
    each pump's first regime change (a process retune or a seal replacement)."""

    reference: np.ndarray
    before: np.ndarray
    after: np.ndarray
    feature_names: list[str]
    change_kinds: list[str]


def regime_pools(seed: int, reference_rows: int = 2000) -> RegimePools:
    settings = SimulatorSettings(
        assets=4,
        days=12,
        seed=seed,
        wear_probability=0.0,
        regime_changes_per_asset=1.5,
        spikes_per_day=0.0,
        stuck_per_day=0.0,
        dropouts_per_day=0.0,
    )
    sim = simulate_fleet(settings)
    table = build_features(sim.telemetry, FeatureSpec())
    first: dict[str, float] = {}
    for event in sim.events:
        first.setdefault(event.asset_id, event.event_time)
    change = np.array([first.get(a, np.inf) for a in table.asset_id])
    before = table.X[table.event_time < change]
    after = table.X[table.event_time >= change]
    order = np.random.default_rng(seed).permutation(len(before))
    return RegimePools(
        reference=before[order[:reference_rows]],
        before=before[order[reference_rows:]],
        after=after,
        feature_names=table.feature_names,
        change_kinds=[e.kind for e in sim.events],
    )
