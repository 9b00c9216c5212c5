"""A small client of the local runtime's control API (used by ``driftloop traffic`` and by the
roll-out controller's local adapter).

>>> client = ControlClient.from_run_dir()  # doctest: +SKIP
>>> client.set_traffic("plant", "pump-bearing-temp", {"main": 75, "canary": 25})  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from driftloop_graphs.errors import GraphError
from driftloop_graphs.run_state import RunState, runtime_dir


class ControlRequestError(GraphError):
    """The control API refused a change; the message is the runtime's explanation."""


class ControlClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 300.0) -> None:
        self._client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )

    @classmethod
    def from_run_dir(cls, directory: Path | None = None) -> ControlClient:
        directory = directory or runtime_dir()
        state = RunState.read(directory)
        if state is None:
            raise GraphError(f"no local runtime state in {directory}: start one with `driftloop up MANIFEST`")
        return cls(state.control_url, RunState.token(directory))

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ControlRequestError(f"control API unreachable ({exc}): is `driftloop up` running?") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ControlRequestError(f"{method} {path} -> {response.status_code}: {message}")
        return response.json()

    def deployments(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._send("GET", "/v1/deployments")
        return result

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send("GET", f"/v1/deployments/{namespace}/{name}")
        return result

    def set_traffic(self, namespace: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        result: dict[str, Any] = self._send(
            "PUT", f"/v1/deployments/{namespace}/{name}/traffic", {"traffic": weights}
        )
        return result

    def set_model(
        self, namespace: str, name: str, predictor: str, node: str, model_uri: str
    ) -> dict[str, Any]:
        path = f"/v1/deployments/{namespace}/{name}/predictors/{predictor}/nodes/{node}/model"
        result: dict[str, Any] = self._send("PUT", path, {"model_uri": model_uri})
        return result

    def close(self) -> None:
        self._client.close()
