"""The traffic backend of the local runtime: a small httpx client of its control API (see
docs/local-runtime.md, "Control API"). It reads the runtime's address and bearer token from the run
directory that ``driftloop up`` writes (``runtime.json``, ``control.token``) and never imports the runtime.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from driftloop.settings import StateSettings
from driftloop_feedback.rollout.backend import DeploymentState
from driftloop_feedback.rollout.errors import BackendError

RUN_SUBDIR = "local-runtime"  # under $DRIFTLOOP_HOME/run, as ``driftloop up`` writes it


def local_run_dir(state: StateSettings | None = None) -> Path:
    return (state or StateSettings()).run_dir() / RUN_SUBDIR


def read_runtime_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "runtime.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BackendError(
            f"{path} not found: is the local runtime running (`driftloop up MANIFEST`) with this "
            "DRIFTLOOP_HOME?"
        ) from exc
    except ValueError as exc:
        raise BackendError(f"{path} is not JSON ({exc}): restart the local runtime") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{path} is not a JSON object: restart the local runtime")
    return data


class LocalControlBackend:
    """``TrafficBackend`` over the local runtime's control API."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout_s: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout_s,
            transport=transport,
        )

    @classmethod
    def from_run_dir(cls, run_dir: Path | None = None) -> LocalControlBackend:
        run_dir = run_dir or local_run_dir()
        data = read_runtime_json(run_dir)
        token_path = run_dir / "control.token"
        try:
            token = token_path.read_text().strip()
        except FileNotFoundError as exc:
            raise BackendError(f"{token_path} not found: is the local runtime running?") from exc
        try:
            url = f"http://{data['control_host']}:{int(data['control_port'])}"
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"{run_dir / 'runtime.json'} has no control_host/control_port") from exc
        return cls(url, token)

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise BackendError(f"control API unreachable ({exc!r}): is `driftloop up` running?") from exc
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except (ValueError, AttributeError):
                message = response.text
            raise BackendError(f"{method} {path} -> {response.status_code}: {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{method} {path} answered 200 without JSON: {response.text[:200]!r}") from exc

    def read(self, namespace: str, name: str) -> DeploymentState:
        return _state(self._send("GET", f"/v1/deployments/{namespace}/{name}"), namespace, name)

    def set_traffic(self, namespace: str, name: str, weights: Mapping[str, int]) -> DeploymentState:
        self._send("PUT", f"/v1/deployments/{namespace}/{name}/traffic", {"traffic": dict(weights)})
        return self.read(namespace, name)

    def set_model(self, namespace: str, name: str, predictor: str, node: str, model_uri: str) -> None:
        path = f"/v1/deployments/{namespace}/{name}/predictors/{predictor}/nodes/{node}/model"
        self._send("PUT", path, {"model_uri": model_uri})

    def close(self) -> None:
        self._client.close()


def _state(data: Any, namespace: str, name: str) -> DeploymentState:
    try:
        traffic: dict[str, int] = {}
        models: dict[str, dict[str, str]] = {}
        for p in data["predictors"]:
            models[str(p["name"])] = {str(k): str(v) for k, v in dict(p.get("nodes") or {}).items()}
            if not p.get("shadow"):
                traffic[str(p["name"])] = int(p.get("traffic") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"the control API described {namespace}/{name} in an unknown shape: {exc!r}"
        ) from exc
    return DeploymentState(namespace, name, traffic, models)
