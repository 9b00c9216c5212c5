"""The demo's loop steps: the shipped SeldonDeployment on the local runtime, predictions through Seldon's
ingress path (logged in Seldon's Kafka format to the event log), ground truth through the feedback API,
and the joiner turning both into labelled examples. Everything runs in this process, on real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "manifests" / "pump-bearing-temp.yaml"
JOIN_TIMEOUT_S = 60.0


@dataclass
class LoopParts:
    """What the loop steps start, so that one ``stop`` can stop all of it."""

    event_log: Any = None
    runtime: Any = None  # LocalRuntime
    loop: asyncio.AbstractEventLoop | None = None
    loop_thread: threading.Thread | None = None
    api_server: Any = None  # uvicorn.Server
    api_thread: threading.Thread | None = None
    api_url: str = ""
    api_token: str = ""
    request_id: str = ""
    predictions: list[float] = field(default_factory=list)
    truths: list[float] = field(default_factory=list)

    def call(self, coro: Any, timeout_s: float = 300.0) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self.api_server is not None:
            self.api_server.should_exit = True
            if self.api_thread is not None:
                self.api_thread.join(10)
            self.api_server = None
        if self.runtime is not None:
            self.call(self.runtime.stop())
            self.runtime = None
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.loop_thread is not None:
                self.loop_thread.join(10)
            self.loop.close()
            self.loop = None
        if self.event_log is not None:
            self.event_log.close()
            self.event_log = None


def start_local_runtime(parts: LoopParts, models_root: Path) -> str:
    from driftloop_graphs.manifest import load_manifests
    from driftloop_graphs.runtime import LocalRuntime, RuntimeSettings
    from driftloop_graphs.spec import Deployment

    from driftloop.eventlog import open_event_log
    from driftloop.settings import StateSettings

    deployments = [Deployment.from_doc(doc) for doc in load_manifests(MANIFEST)]
    parts.event_log = open_event_log()
    settings = RuntimeSettings(models_root=models_root, run_dir=StateSettings().run_dir() / "demo-runtime")
    parts.loop = asyncio.new_event_loop()
    parts.loop_thread = threading.Thread(target=parts.loop.run_forever, name="demo-runtime", daemon=True)
    parts.loop_thread.start()
    parts.runtime = LocalRuntime(deployments, settings, parts.event_log)
    ready_s = parts.call(parts.runtime.start())
    url = parts.runtime.url(deployments[0])
    return f"{MANIFEST.relative_to(REPO)} ready in {ready_s:.1f} s at {url}"


def predict_through_ingress(parts: LoopParts, telemetry: Any) -> str:
    """Each pump's last row whose truth (30 min later) the simulation knows, in one V2 request."""
    import httpx
    import pandas as pd

    from driftloop.learning.features import FeatureSpec, build_features
    from driftloop.learning.v2_payload import features_request, output_values

    table = build_features(telemetry, FeatureSpec(), require_label=True)
    order = pd.DataFrame({"asset": table.asset_id, "t": table.event_time})
    last = order.groupby("asset", sort=True)["t"].idxmax().to_numpy()
    rows = table.select(np.isin(np.arange(len(table)), last))
    parts.request_id = f"driftloop-demo-{uuid.uuid4()}"
    body = features_request(rows.X, asset_ids=list(rows.asset_id), event_times=list(rows.event_time))
    url = parts.runtime.url(parts.runtime.deployments[0]) + "/v2/models/infer"
    response = httpx.post(url, json=body, headers={"Seldon-Puid": parts.request_id}, timeout=60.0)
    response.raise_for_status()
    values = output_values(response.json())
    parts.predictions = [float(v) for v in values["prediction"]]
    parts.truths = [float(v) for v in rows.y]
    now = rows.X[:, rows.feature_names.index("bearing_temp_c")]
    click.echo(f"  {'asset':<9} {'bearing now':>11} {'forecast':>9} {'outlier':>8}")
    for i, asset in enumerate(rows.asset_id):
        flag = "yes" if values["outlier_flag"][i] else "no"
        click.echo(f"  {asset:<9} {now[i]:>9.2f} C {parts.predictions[i]:>7.2f} C {flag:>8}")
    return f"Seldon-Puid {response.headers['Seldon-Puid']}; request and response logged to topic 'seldon'"


def _quiet_server_class() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn in a thread: the CLI's process owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


def start_feedback_api(parts: LoopParts) -> str:
    import uvicorn
    from driftloop_feedback.api.app import create_app
    from driftloop_feedback.api.settings import FeedbackSettings
    from driftloop_graphs.runtime import bind
    from pydantic import SecretStr

    parts.api_token = secrets.token_hex(16)
    settings = FeedbackSettings(token=SecretStr(parts.api_token))
    sock = bind("127.0.0.1", 0)
    config = uvicorn.Config(create_app(settings, parts.event_log), log_level="warning", lifespan="off")
    server = _quiet_server_class()(config)
    parts.api_server = server
    parts.api_thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    parts.api_thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    parts.api_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    return f"feedback API on {parts.api_url} (bearer token)"


def send_ground_truth(parts: LoopParts) -> str:
    import httpx

    response = httpx.post(
        f"{parts.api_url}/v1/feedback",
        json={"request_id": parts.request_id, "truth": parts.truths},
        headers={"Authorization": f"Bearer {parts.api_token}"},
        timeout=30.0,
    )
    response.raise_for_status()
    accepted = response.json()["accepted"]
    return f"{accepted} truth value(s) for {parts.request_id} accepted (written to the feedback topic)"


def join_labelled(parts: LoopParts) -> str:
    """Run the joiner until this run's predictions are labelled; report the forecast's error on them."""
    from driftloop_feedback.join.pipeline import Joiner
    from driftloop_feedback.join.settings import JoinerSettings
    from driftloop_feedback.labelled import LabelledDeduper

    from driftloop.settings import StateSettings

    home = StateSettings().resolved_home()
    # The demo's joiner state is the demo's own: state left by a demo on another log (the embedded one,
    # then Kafka, in one DRIFTLOOP_HOME) is moved aside with a warning rather than stopping the demo.
    settings = JoinerSettings(
        mode="request", group_id="driftloop-demo-joiner", state_dir=home / "demo-joiner", reset_state=True
    )
    joiner = Joiner(parts.event_log, settings)
    reader = parts.event_log.consumer(
        f"driftloop-demo-reader-{uuid.uuid4().hex[:8]}", [settings.labelled_topic]
    )
    dedupe = LabelledDeduper()  # the trainer's view of the at-least-once topic
    found: dict[int, Any] = {}
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while len(found) < len(parts.truths) and time.monotonic() < deadline:
            joiner.step(0.05)
            joiner.checkpoint()
            for example in dedupe.feed(record.value for record in reader.poll(0.05, 5000)):
                if example.request_id == parts.request_id:
                    found[example.row] = example
    finally:
        reader.close()
        joiner.close()
    if len(found) < len(parts.truths):
        raise click.ClickException(
            f"the joiner labelled {len(found)} of {len(parts.truths)} predictions in {JOIN_TIMEOUT_S:.0f} s"
        )
    errors = [abs(e.prediction - e.truth) for e in found.values()]
    version = next(iter(found.values())).model_version
    return (
        f"{len(found)} labelled example(s) on topic {settings.labelled_topic} (model version {version}); "
        f"forecast MAE on them {sum(errors) / len(errors):.2f} C"
    )
