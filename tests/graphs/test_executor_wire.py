"""The one-node callback path sends the node exactly the request the coroutine path sends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from driftloop_graphs.executor import CallContext, Payload, PredictorExecutor
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.metrics import IngressMetrics
from driftloop_graphs.spec import Deployment
from driftloop_graphs.upstream import Outcome, UpstreamPool, _encode, _Origin

MANIFEST = Path(__file__).parent / "manifests" / "echo-single.yaml"


class CapturingPool(UpstreamPool):
    """Records what would be sent instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def try_send(self, host: str, port: int, wire: bytes, outcome: Outcome, what: str) -> bool:
        self.sent.append(wire)
        return True


def test_predict_then_sends_the_bytes_of_the_coroutine_paths_request() -> None:
    deployment = Deployment.from_doc(load_manifests(MANIFEST)[0])
    predictor = deployment.predictors[0]
    pool = CapturingPool()
    executor = PredictorExecutor(deployment, predictor, "http://127.0.0.1:9123", pool, IngressMetrics(), None)
    payload = Payload(b'{"inputs": []}', "application/json; charset=utf-8")
    ctx = CallContext(puid="0b8e-42")

    async def send() -> bool:
        return executor.predict_then(payload, ctx, lambda _: None)

    assert asyncio.run(send())
    origin = _Origin("127.0.0.1", 9123, 1)
    path = f"/v2/models/{predictor.graph.name}/infer"
    assert pool.sent == [_encode(origin, "POST", path, payload.body, executor._headers(payload, ctx))]
