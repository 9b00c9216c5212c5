"""Settings in Flagger's vocabulary, and the local backend's answers to the control API's errors."""

from __future__ import annotations

import httpx
import pytest
from driftloop_feedback.rollout import BackendError, RolloutSettings
from driftloop_feedback.rollout.local_backend import LocalControlBackend
from pydantic import ValidationError


def test_step_weight_steps_up_to_max_weight() -> None:
    assert RolloutSettings(step_weight=20, max_weight=50).weights() == [20, 40, 50]
    assert RolloutSettings(step_weights=[5, 25, 60]).weights() == [5, 25, 60]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_weights": [10, 10]}, "strictly increasing"),
        ({"step_weights": [10, 50], "max_weight": 40}, "disagree"),
        ({"step_weight": 60, "max_weight": 50}, "DRIFTLOOP_ROLLOUT_STEP_WEIGHT"),
        ({"canary_predictor": "main"}, "different predictors"),
    ],
)
def test_inconsistent_settings_are_refused_saying_what_to_fix(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutSettings(**kwargs)  # type: ignore[arg-type]


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_STEP_WEIGHTS", "[5, 50]")
    monkeypatch.setenv("DRIFTLOOP_ROLLOUT_THRESHOLD", "3")
    s = RolloutSettings()
    assert (s.weights(), s.threshold) == ([5, 50], 3)


def test_the_local_backend_reads_state_and_passes_on_the_runtimes_refusal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer tok"
        if request.method == "PUT":
            return httpx.Response(400, json={"error": "weights must sum to 100", "code": "bad_request"})
        return httpx.Response(
            200,
            json={
                "namespace": "plant",
                "name": "pump",
                "predictors": [
                    {"name": "main", "shadow": False, "traffic": 90, "nodes": {"m": "models:/x/1"}},
                    {"name": "canary", "shadow": False, "traffic": 10, "nodes": {"m": "models:/x/2"}},
                    {"name": "shadow", "shadow": True, "traffic": 0, "nodes": {"m": "models:/x/2"}},
                ],
            },
        )

    backend = LocalControlBackend("http://control", "tok", transport=httpx.MockTransport(handler))
    try:
        state = backend.read("plant", "pump")
        assert state.traffic == {"main": 90, "canary": 10}
        assert state.model_uri("canary", "m") == "models:/x/2"
        with pytest.raises(BackendError, match="400: weights must sum to 100"):
            backend.set_traffic("plant", "pump", {"main": 50})
    finally:
        backend.close()
