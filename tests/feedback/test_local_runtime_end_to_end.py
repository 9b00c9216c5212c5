"""End to end with real parts: the local runtime serves a two-node graph on real MLServer processes and
writes the request log itself (Seldon's format) to the embedded log / a real Kafka broker; the feedback
API (real HTTP, uvicorn) accepts truth by request id and asset readings; a joiner subprocess labels."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
from driftloop_graphs.spec import Deployment

from driftloop.eventlog import EventLog
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.kafka import KafkaEventLog
from tests.feedback.pipeline_support import (
    REPO,
    LabelledReader,
    Topology,
    api_url,
    create_topics,
    progress,
    start_api,
    start_joiner,
    stop,
)
from tests.fixtures.kafka import quick_kafka_settings
from tests.graphs.runtime_thread import RuntimeThread

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TOKEN = "end-to-end-token-0123456789abcdef"

MANIFEST = """
apiVersion: machinelearning.seldon.io/v1
kind: SeldonDeployment
metadata: {{name: pump, namespace: plant}}
spec:
  protocol: v2
  predictors:
    - name: main
      traffic: 100
      svcOrchSpec: {{env: [{{name: LOGGER_KAFKA_TOPIC, value: {topic}}}]}}
      componentSpecs:
        - spec:
            containers:
              - {{name: fb-pass, image: seldonio/mlserver:1.7.1}}
              - {{name: fb-model, image: seldonio/mlserver:1.7.1}}
      graph:
        name: fb-pass
        type: TRANSFORMER
        logger: {{mode: all}}
        children:
          - {{name: fb-model, type: MODEL, logger: {{mode: all}}}}
"""


@pytest.fixture(params=["embedded", "kafka"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[EventLog, dict[str, str]]]:
    home = tmp_path / "home"
    env = {"DRIFTLOOP_HOME": str(home)}
    monkeypatch.setenv("DRIFTLOOP_HOME", str(home))
    if request.param == "kafka":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        env["DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        log: EventLog = KafkaEventLog(bootstrap, quick_kafka_settings())
    else:
        log = EmbeddedEventLog(home / "eventlog")
    try:
        yield log, env
    finally:
        log.close()


def test_runtime_request_log_plus_api_truth_and_readings_are_labelled(
    backend: tuple[EventLog, dict[str, str]], tmp_path: Path
) -> None:
    log, env = backend
    topo = Topology(partitions=2)
    env = {
        **env,
        **topo.env(),
        "DRIFTLOOP_JOINER_TOLERANCE_S": "100",
        "DRIFTLOOP_JOINER_ALLOWED_LATENESS_S": "0",
    }
    create_topics(log, topo)
    manifest = tmp_path / "pump.yaml"
    manifest.write_text(MANIFEST.format(topic=topo.topic("request_log")))
    deployments = [Deployment.from_doc(doc) for doc in load_manifests(manifest)]
    settings = RuntimeSettings(
        models_root=HERE / "models", run_dir=tmp_path / "run", mlserver_env={"PYTHONPATH": str(REPO)}
    )
    api_env = {
        **env,
        "DRIFTLOOP_FEEDBACK_TOKEN": TOKEN,
        "DRIFTLOOP_FEEDBACK_FEEDBACK_TOPIC": topo.topic("feedback"),
    }
    api = start_api(api_env, tmp_path / "api.log")
    joiner = start_joiner(env, tmp_path / "joiner.log")
    reader = LabelledReader(log, topo.topic("labelled"))
    try:
        with RuntimeThread(LocalRuntime(deployments, settings, log)) as rt:
            url = rt.runtime.url(deployments[0])
            puids = []
            for i in range(10):  # request-id join: no asset tensors
                body = {
                    "inputs": [
                        {"name": "features", "shape": [2, 2], "datatype": "FP64", "data": [i, 1.0, i, 2.0]}
                    ]
                }
                r = httpx.post(f"{url}/v2/models/infer", json=body, timeout=30)
                assert r.status_code == 200, r.text
                puids.append(r.headers["Seldon-Puid"])
            t0 = 1_700_000_000.0
            asset_puid = None
            body = {
                "inputs": [
                    {"name": "features", "shape": [1, 2], "datatype": "FP64", "data": [50.0, 10.0]},
                    {"name": "asset_id", "shape": [1], "datatype": "BYTES", "data": ["pump-01"]},
                    {"name": "event_time", "shape": [1], "datatype": "FP64", "data": [t0]},
                ]
            }
            r = httpx.post(f"{url}/v2/models/infer", json=body, timeout=30)
            assert r.status_code == 200, r.text
            asset_puid = r.headers["Seldon-Puid"]
        base = api_url(tmp_path / "api.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        truths = [{"request_id": p, "truth": [100.0 + k, 200.0 + k]} for k, p in enumerate(puids[:6])]
        readings = [
            {"asset_id": "pump-01", "event_time": t0 + dt, "values": {"bearing_temp": v}}
            for dt, v in [(1700.0, 61.0), (1790.0, 62.5), (1900.0, 63.0), (2400.0, 64.0)]
        ]
        r = httpx.post(f"{base}/v1/feedback", json={"records": truths + readings}, headers=auth, timeout=30)
        assert r.status_code == 200 and r.json()["accepted"] == 16, r.text
        expected = {f"{p}:{row}" for p in puids[:6] for row in (0, 1)} | {f"{asset_puid}:0"}
        reader.read_until(lambda: len(reader.examples) >= len(expected), timeout_s=200)
    finally:
        stop(joiner)
        stop(api)
        reader.close()
    assert set(reader.examples) == expected, progress(tmp_path / "joiner.log")
    first = reader.examples[f"{puids[1]}:1"]
    assert (first.features, first.prediction, first.truth) == ((1.0, 2.0), 3.0, 201.0)
    assert (first.endpoint, first.model_version, first.joined_by) == ("main", "7", "request")
    forecast = reader.examples[f"{asset_puid}:0"]
    assert (forecast.prediction, forecast.truth, forecast.truth_time) == (60.0, 62.5, t0 + 1790.0)
    assert forecast.joined_by == "asset" and forecast.asset_id == "pump-01"
