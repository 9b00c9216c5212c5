"""Hot swap: a new registered version goes live in a running MLServer while clients keep calling.

Register a new version, move ``champion`` to it, ``POST /v2/repository/models/bearing-temp/load``:
MLServer builds the new runtime beside the old one and switches, so no request fails and every request
sent after the load call returned is answered by the new version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from sklearn.base import clone

from driftloop.learning.registration import MODEL_NAME, model_pip_requirements
from driftloop.learning.v2_payload import features_request
from driftloop.mlserver_process import MLServerProcess
from tests.fixtures.mlserver import TrainedState

pytestmark = pytest.mark.integration

CLIENTS = 8


@dataclass(frozen=True)
class Call:
    sent: float
    status: int
    version: str | None
    error: str | None


def call_until(stop: threading.Event, url: str, body: dict[str, object], calls: list[Call]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = client.post("/v2/models/bearing-temp/infer", json=body)
                version = response.json().get("model_version") if response.status_code == 200 else None
                calls.append(Call(sent, response.status_code, version, None if version else response.text))
            except httpx.HTTPError as exc:
                calls.append(Call(sent, 0, None, f"{type(exc).__name__}: {exc}"))


def test_new_champion_swaps_in_under_load_without_a_failed_request(
    mlserver_server: MLServerProcess, trained_state: TrainedState
) -> None:
    registry = trained_state.registry
    old = registry.get_alias(MODEL_NAME, "champion")
    X = trained_state.rows(4)
    body = features_request(X)

    # a genuinely different model: another seed, then one more incremental step on recent rows
    new_model = clone(trained_state.training.model).set_params(random_state=1234)
    new_model.fit(trained_state.validation.X[:1000], trained_state.validation.y[:1000])
    new_model.partial_fit(trained_state.validation.X[1000:1400], trained_state.validation.y[1000:1400])

    calls: list[list[Call]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()
    threads = [
        threading.Thread(target=call_until, args=(stop, mlserver_server.url, body, calls[i]), daemon=True)
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(len(c) for c in calls) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        new = registry.register_sklearn_model(
            MODEL_NAME, new_model, input_example=X, pip_requirements=model_pip_requirements()
        )
        registry.set_alias(MODEL_NAME, "champion", new.version)
        load_started = time.monotonic()
        with httpx.Client(base_url=mlserver_server.url, timeout=60) as admin:
            load = admin.post("/v2/repository/models/bearing-temp/load")
        loaded_at = time.monotonic()
        assert load.status_code == 200, load.text
        while sum(1 for c in calls for call in c if call.sent > loaded_at) < 100:
            time.sleep(0.05)
            assert time.monotonic() < deadline + 60, "clients stopped making progress after the swap"
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    everything = [call for per_client in calls for call in per_client]
    print(
        f"hot swap: {len(everything)} calls from {CLIENTS} clients, load call took "
        f"{loaded_at - load_started:.2f}s, v{old.version} -> v{new.version}"
    )
    failures = [call for call in everything if call.status != 200]
    assert failures == [], f"{len(failures)} failed of {len(everything)}: {failures[:3]}"
    assert all(len(per_client) > 0 for per_client in calls), "every client got answers"
    versions_before = {call.version for call in everything if call.sent < load_started}
    versions_after = {call.version for call in everything if call.sent > loaded_at}
    assert versions_before <= {str(old.version)}
    assert versions_after == {str(new.version)}
    assert {str(old.version), str(new.version)} <= {call.version for call in everything}

    # the new version's predictions are the new model's
    with httpx.Client(base_url=mlserver_server.url, timeout=10) as client:
        answer = client.post("/v2/models/bearing-temp/infer", json=body).json()
    np.testing.assert_allclose(answer["outputs"][0]["data"], new_model.predict(X), rtol=1e-9)
    assert not np.allclose(new_model.predict(X), trained_state.training.model.predict(X))
