"""A small typed client for SeldonDeployments over the Kubernetes REST API (plain httpx).

What the rollout side needs and nothing more: get, server-side apply, change predictor traffic, watch,
delete. Works against a cluster (kubeconfig or in-pod service account) and the local test server.

Example::

    client = SeldonDeploymentClient(KubeConnection.from_kubeconfig())
    client.apply(yaml.safe_load(Path("manifests/pump-bearing-temp-canary.yaml").read_text()))
    client.set_traffic("pump-bearing-temp", {"main": 75, "canary": 25})
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from driftloop.kube.connection import KubeConnection
from driftloop.kube.errors import KubeAPIError, KubeError, raise_for_status

GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SeldonDeployment"
FieldValidation = Literal["Strict", "Warn", "Ignore"]


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``type`` is ADDED, MODIFIED, DELETED (or BOOKMARK when asked for)."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


class SeldonDeploymentClient:
    """SeldonDeployments in one namespace (default: the connection's)."""

    def __init__(
        self,
        connection: KubeConnection,
        namespace: str | None = None,
        field_manager: str = "driftloop",
        timeout_s: float = 30.0,
    ) -> None:
        self.namespace = namespace or connection.namespace
        self.field_manager = field_manager
        self._http = connection.http_client(timeout_s=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SeldonDeploymentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _path(self, name: str | None = None) -> str:
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        return f"{base}/{name}" if name else base

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        raise_for_status(response)
        body: dict[str, Any] = response.json()
        return body

    # -- read ------------------------------------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any]:
        return self._json(self._http.get(self._path(name)))

    def list(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json(self._http.get(self._path())).get("items", [])
        return items

    # -- write -----------------------------------------------------------------------------------------
    def apply(
        self,
        manifest: Mapping[str, Any],
        force: bool = False,
        dry_run: bool = False,
        field_validation: FieldValidation = "Strict",
    ) -> dict[str, Any]:
        """Server-side apply ``manifest`` (as ``kubectl apply --server-side``); returns the stored object.

        ``force`` takes over fields another manager owns (``--force-conflicts``); ``dry_run`` validates
        and returns the result without storing it (``--dry-run=server``). ``field_validation``:
        ``Strict`` (kubectl's default) refuses fields the CRD does not know, such as a typo ``trafic``;
        ``Warn`` (the API server's default) and ``Ignore`` drop them silently."""
        name = _check_kind(manifest, self.namespace)
        params = {
            "fieldManager": self.field_manager,
            "force": str(force).lower(),
            "fieldValidation": field_validation,
        }
        if dry_run:
            params["dryRun"] = "All"
        response = self._http.patch(
            self._path(name),
            params=params,
            content=json.dumps(manifest).encode(),  # JSON is YAML: apply patches accept it
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        return self._json(response)

    def create(
        self, manifest: Mapping[str, Any], dry_run: bool = False, field_validation: FieldValidation = "Strict"
    ) -> dict[str, Any]:
        """Create ``manifest`` (as ``kubectl create``); 409 AlreadyExists if the name is taken.

        Schema violations come back as 422 Invalid with one ``causes`` entry per field. (Server-side
        apply reports a wrongly typed field as 500 "failed to create typed patch object" instead.)"""
        _check_kind(manifest, self.namespace)
        params: dict[str, str] = {"fieldManager": self.field_manager, "fieldValidation": field_validation}
        if dry_run:
            params["dryRun"] = "All"
        return self._json(self._http.post(self._path(), params=params, json=dict(manifest)))

    def set_traffic(self, name: str, traffic: Mapping[str, int]) -> dict[str, Any]:
        """Set ``spec.predictors[].traffic`` of the named predictors in one atomic JSON patch.

        Each replacement is guarded by a ``test`` of the predictor's name at its index, so a concurrent
        reordering of predictors fails the patch (HTTP 422) instead of moving traffic to the wrong one."""
        predictors = self.get(name)["spec"]["predictors"]
        index = {p["name"]: i for i, p in enumerate(predictors)}
        unknown = sorted(set(traffic) - set(index))
        if unknown:
            raise KubeError(f"SeldonDeployment {name} has no predictor(s) {unknown}; it has {sorted(index)}")
        ops: list[dict[str, Any]] = []
        for predictor, weight in traffic.items():
            i = index[predictor]
            ops.append({"op": "test", "path": f"/spec/predictors/{i}/name", "value": predictor})
            ops.append({"op": "add", "path": f"/spec/predictors/{i}/traffic", "value": int(weight)})
        response = self._http.patch(
            self._path(name),
            params={"fieldManager": self.field_manager},
            content=json.dumps(ops).encode(),
            headers={"Content-Type": "application/json-patch+json"},
        )
        return self._json(response)

    def delete(self, name: str) -> None:
        response = self._http.delete(self._path(name))
        if response.status_code != 404:
            raise_for_status(response)

    # -- watch -----------------------------------------------------------------------------------------
    def watch(
        self,
        name: str | None = None,
        resource_version: str | None = None,
        timeout_s: int = 30,
        bookmarks: bool = False,
    ) -> Generator[WatchEvent, None, None]:
        """Events for one SeldonDeployment (or all in the namespace) after ``resource_version``, until
        the server closes the watch after ``timeout_s``. An ``ERROR`` event (e.g. 410 Gone: the version
        is too old, re-list) raises :class:`KubeAPIError`. ``close()`` the generator to stop early."""
        params: dict[str, str | int] = {
            "watch": "true",
            "timeoutSeconds": timeout_s,
            "allowWatchBookmarks": str(bookmarks).lower(),
        }
        if name:
            params["fieldSelector"] = f"metadata.name={name}"
        if resource_version:
            params["resourceVersion"] = resource_version
        timeout = httpx.Timeout(10.0, read=timeout_s + 10.0)
        with self._http.stream("GET", self._path(), params=params, timeout=timeout) as response:
            if not response.is_success:
                response.read()
                raise_for_status(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":
                    status = event["object"]
                    raise KubeAPIError(
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                        list((status.get("details") or {}).get("causes") or []),
                    )
                yield WatchEvent(type=event["type"], object=event["object"])


def _check_kind(manifest: Mapping[str, Any], namespace: str) -> str:
    """The manifest's name, after checking it is a SeldonDeployment for ``namespace``."""
    if manifest.get("apiVersion") != API_VERSION or manifest.get("kind") != KIND:
        raise KubeError(
            f"expected apiVersion {API_VERSION} kind {KIND}, got "
            f"{manifest.get('apiVersion')} {manifest.get('kind')}"
        )
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise KubeError("the manifest has no metadata.name")
    if metadata.get("namespace") not in (None, namespace):
        raise KubeError(
            f"manifest namespace {metadata['namespace']!r} differs from the client's {namespace!r}"
        )
    return str(name)
