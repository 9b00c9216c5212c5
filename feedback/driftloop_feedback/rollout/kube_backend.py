"""The traffic backend of a cluster: the SeldonDeployment itself, through the Kubernetes API (lightkube).

Writes are JSON patches guarded twice: a ``test`` of each predictor's (and node's) name at its index, and
``metadata.resourceVersion`` set to the version this backend last saw (its own ``read`` or its own last
write). The API server refuses a patch whose resourceVersion is stale with 409 Conflict, so an edit made by
someone else in between (``kubectl edit``, another tool) is never overwritten: the backend reads the
object again and

- if its ``metadata.generation`` did not move (only ``status`` or metadata changed, e.g. the Seldon
  operator reporting), the patch is sent once more against the fresh version: nothing of the spec is lost;
- otherwise it raises ``BackendError`` naming the resource, the versions, who wrote it (managedFields) and
  what changed (traffic, model URIs, or other spec fields), and keeps the version it had: every later
  write fails the same way until the controller reads the deployment again (a restart, which resumes or
  aborts from what the cluster says). No write is retried blindly.

``watch`` follows the object (a Kubernetes watch from the last version seen) and yields each change.
The feedback side reaches the cluster only through the API: no import of the graphs package.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import PatchType

from driftloop_feedback.rollout.backend import DeploymentState
from driftloop_feedback.rollout.errors import BackendError

log = logging.getLogger(__name__)

SeldonDeployment = create_namespaced_resource(
    "machinelearning.seldon.io", "v1", "SeldonDeployment", "seldondeployments"
)
FIELD_MANAGER = "driftloop-rollout"
WriteHook = Callable[[str, str], None]


def kube_client(kubeconfig: Path | None = None, context: str | None = None) -> Client:
    """A lightkube client: ``kubeconfig`` (and ``context``) if given, else the pod's service account when
    running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    try:
        config = KubeConfig.from_file(kubeconfig) if kubeconfig is not None else KubeConfig.from_env()
        return Client(config.get(context) if context else config)
    except Exception as exc:  # lightkube raises ConfigError, OSError or KeyError for a bad kubeconfig
        where = kubeconfig or "the pod's service account or $KUBECONFIG"
        raise BackendError(
            f"cannot configure the Kubernetes client from {where} ({exc!r}): set "
            "DRIFTLOOP_ROLLOUT_KUBECONFIG to a readable kubeconfig, or run in a pod with a service account"
        ) from exc


class KubeSeldonBackend:
    """``TrafficBackend`` over SeldonDeployments: get, guarded JSON patches, watch."""

    def __init__(
        self, client: Client, *, field_manager: str = FIELD_MANAGER, before_write: WriteHook | None = None
    ) -> None:
        self._client = client
        self._field_manager = field_manager
        self._before_write = before_write  # tests: a "human" edit between our read and our write
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}

    def close(self) -> None:
        self._client.close()

    # -- reading -------------------------------------------------------------------------------------
    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        try:
            obj = self._client.get(SeldonDeployment, name, namespace=namespace)
        except ApiError as exc:
            raise BackendError(f"cannot read SeldonDeployment {namespace}/{name}: {_api_error(exc)}") from exc
        except Exception as exc:  # httpx2 transport errors
            raise BackendError(f"Kubernetes API unreachable reading {namespace}/{name}: {exc!r}") from exc
        return dict(obj.to_dict())

    def read(self, namespace: str, name: str) -> DeploymentState:
        obj = self._get(namespace, name)
        self._seen[(namespace, name)] = obj
        return state_of(obj, namespace, name)

    def watch(
        self, namespace: str, name: str, timeout_s: int = 30
    ) -> Generator[tuple[str, DeploymentState], None, None]:
        """Changes of the SeldonDeployment after the version this backend last saw: ``(event type, state)``
        for each, until the server ends the watch after ``timeout_s``. What it yields does not refresh the
        version the writes are guarded with (a change seen here still fails the next write)."""
        key = (namespace, name)
        if key not in self._seen:
            self.read(namespace, name)
        since = str(self._seen[key]["metadata"]["resourceVersion"])
        events = self._client.watch(
            SeldonDeployment,
            namespace=namespace,
            fields={"metadata.name": name},
            resource_version=since,
            server_timeout=timeout_s,
        )
        try:
            for kind, obj in events:
                yield kind, state_of(dict(obj.to_dict()), namespace, name)
        except ApiError as exc:
            raise BackendError(f"watch of SeldonDeployment {namespace}/{name}: {_api_error(exc)}") from exc

    # -- writing -------------------------------------------------------------------------------------
    def set_traffic(self, namespace: str, name: str, weights: Mapping[str, int]) -> DeploymentState:
        def ops(obj: dict[str, Any]) -> list[dict[str, Any]]:
            predictors = obj["spec"]["predictors"]
            names = {str(p["name"]) for p in predictors if not p.get("shadow")}
            unknown = sorted(set(weights) - names)
            if unknown:
                raise BackendError(
                    f"SeldonDeployment {namespace}/{name} has no predictor(s) {unknown}; "
                    f"it has {sorted(names)}"
                )
            out: list[dict[str, Any]] = []
            for i, p in enumerate(predictors):
                if p.get("shadow"):
                    continue
                out.append({"op": "test", "path": f"/spec/predictors/{i}/name", "value": p["name"]})
                weight = int(weights.get(str(p["name"]), 0))
                out.append({"op": "add", "path": f"/spec/predictors/{i}/traffic", "value": weight})
            return out

        if sum(int(w) for w in weights.values()) != 100:
            raise BackendError(f"traffic {dict(weights)} for {namespace}/{name} does not add up to 100")
        return state_of(self._patch(namespace, name, ops, f"traffic {dict(weights)}"), namespace, name)

    def set_model(self, namespace: str, name: str, predictor: str, node: str, model_uri: str) -> None:
        def ops(obj: dict[str, Any]) -> list[dict[str, Any]]:
            for i, p in enumerate(obj["spec"]["predictors"]):
                if p["name"] != predictor:
                    continue
                path = _node_path(p.get("graph") or {}, node, f"/spec/predictors/{i}/graph")
                if path is None:
                    raise BackendError(
                        f"predictor {predictor} of {namespace}/{name} has no graph node {node}"
                    )
                return [
                    {"op": "test", "path": f"/spec/predictors/{i}/name", "value": predictor},
                    {"op": "test", "path": f"{path}/name", "value": node},
                    {"op": "add", "path": f"{path}/modelUri", "value": model_uri},
                ]
            raise BackendError(f"SeldonDeployment {namespace}/{name} has no predictor {predictor}")

        self._patch(namespace, name, ops, f"{predictor}/{node} modelUri {model_uri}")

    def _patch(
        self, namespace: str, name: str, build: Callable[[dict[str, Any]], list[dict[str, Any]]], what: str
    ) -> dict[str, Any]:
        key = (namespace, name)
        seen = self._seen.get(key)
        if seen is None:  # nothing read yet: nothing this controller decided on can be stale
            seen = self._get(namespace, name)
            self._seen[key] = seen
        for attempt in (1, 2):
            version = str(seen["metadata"]["resourceVersion"])
            ops = [*build(seen), {"op": "replace", "path": "/metadata/resourceVersion", "value": version}]
            if self._before_write is not None:
                self._before_write(namespace, name)
            try:
                obj = self._client.patch(
                    SeldonDeployment,
                    name,
                    ops,
                    namespace=namespace,
                    patch_type=PatchType.JSON,
                    field_manager=self._field_manager,
                )
            except ApiError as exc:
                code = exc.status.code
                if code != 409 and code != 422:
                    raise BackendError(
                        f"patch of SeldonDeployment {namespace}/{name} ({what}) refused: {_api_error(exc)}"
                    ) from exc
                now = self._get(namespace, name)
                if not _same_spec(seen, now):
                    raise BackendError(_conflict_message(namespace, name, what, seen, now)) from exc
                if code == 409 and attempt == 1:
                    log.info(
                        "rollout: %s/%s changed only in status/metadata; patching again", namespace, name
                    )
                    seen = now
                    continue
                raise BackendError(
                    f"patch of SeldonDeployment {namespace}/{name} ({what}) refused: {_api_error(exc)}"
                ) from exc
            except Exception as exc:  # httpx2 transport errors
                raise BackendError(
                    f"Kubernetes API unreachable patching {namespace}/{name}: {exc!r}"
                ) from exc
            result = dict(obj.to_dict())
            self._seen[key] = result
            return result
        raise AssertionError("unreachable")  # pragma: no cover


def state_of(obj: Mapping[str, Any], namespace: str, name: str) -> DeploymentState:
    """Traffic of the non-shadow predictors and every graph node's model URI."""
    traffic: dict[str, int] = {}
    models: dict[str, dict[str, str]] = {}
    try:
        for p in obj["spec"]["predictors"]:
            nodes: dict[str, str] = {}
            _collect_uris(p.get("graph") or {}, nodes)
            models[str(p["name"])] = nodes
            if not p.get("shadow"):
                traffic[str(p["name"])] = int(p.get("traffic") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"SeldonDeployment {namespace}/{name} has no readable spec.predictors ({exc!r})"
        ) from exc
    return DeploymentState(namespace, name, traffic, models)


def _collect_uris(node: Mapping[str, Any], out: dict[str, str]) -> None:
    if node.get("name") and node.get("modelUri"):
        out[str(node["name"])] = str(node["modelUri"])
    for child in node.get("children") or []:
        _collect_uris(child, out)


def _node_path(node: Mapping[str, Any], name: str, path: str) -> str | None:
    if node.get("name") == name:
        return path
    for i, child in enumerate(node.get("children") or []):
        found = _node_path(child, name, f"{path}/children/{i}")
        if found is not None:
            return found
    return None


def _same_spec(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ga, gb = a["metadata"].get("generation"), b["metadata"].get("generation")
    return ga is not None and ga == gb and a.get("spec") == b.get("spec")


def _conflict_message(
    namespace: str, name: str, what: str, seen: Mapping[str, Any], now: Mapping[str, Any]
) -> str:
    before, after = state_of(seen, namespace, name), state_of(now, namespace, name)
    changes = [
        f"{p} traffic {before.weight(p)} -> {after.weight(p)}"
        for p in sorted(set(before.traffic) | set(after.traffic))
        if before.weight(p) != after.weight(p)
    ]
    for p in sorted(set(before.models) | set(after.models)):
        for n in sorted(set(before.models.get(p, {})) | set(after.models.get(p, {}))):
            if before.model_uri(p, n) != after.model_uri(p, n):
                changes.append(f"{p}/{n} modelUri {before.model_uri(p, n)} -> {after.model_uri(p, n)}")
    if not changes:
        changes.append("other spec fields")
    managers = sorted(
        {
            str(m.get("manager"))
            for m in now["metadata"].get("managedFields") or []
            if m.get("manager") != FIELD_MANAGER
        }
    )
    return (
        f"SeldonDeployment {namespace}/{name} was changed by someone else since this controller read it "
        f"(resourceVersion {seen['metadata']['resourceVersion']} -> {now['metadata']['resourceVersion']}, "
        f"generation {seen['metadata'].get('generation')} -> {now['metadata'].get('generation')}; other "
        f"writers: {', '.join(managers) or 'unknown'}): {'; '.join(changes)}. Not overwritten ({what} not "
        "applied): check the edit, then restart the rollout controller, which resumes or aborts from what "
        "the cluster says"
    )


def _api_error(exc: ApiError) -> str:
    status = exc.status
    return f"{status.code} {status.reason}: {status.message}"
