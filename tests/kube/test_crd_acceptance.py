"""driftloop's manifests against the real API server with the Seldon CRD, and against driftloop's validator.

The CRD alone cannot enforce Seldon's rules (no enums, untyped graph children, nothing across
predictors): Seldon's operator webhook does that on a cluster. The webhook-only table proves each rule
passes the real API server and is caught by ``driftloop_graphs.validation``; the structural table proves
both reject what the schema forbids, at the same field path.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.validation import ValidationIssue, validate

from driftloop.kube.errors import KubeAPIError
from driftloop.kube.full_apiserver import FullKubeAPIServer
from driftloop.kube.sdep_client import SeldonDeploymentClient
from tests.conftest import REPO_ROOT
from tests.kube.sdeps import canary_sdep, shadow_predictor

pytestmark = pytest.mark.integration

MANIFEST_DIR = REPO_ROOT / "manifests"
# The demo manifests pinned in docs/CONTRACTS.md must exist; every other manifest is checked too.
CONTRACT_MANIFESTS = {"pump-bearing-temp.yaml", "pump-bearing-temp-canary.yaml"}
MANIFESTS = sorted(CONTRACT_MANIFESTS | {p.name for p in MANIFEST_DIR.glob("*.y*ml")})

Mutation = Callable[[dict[str, Any]], None]
CHILD = "spec.predictors[0].graph.children[0]"


def kubectl_apply(server: FullKubeAPIServer, kubectl: str, path: Path, namespace: str, *extra: str) -> str:
    result = subprocess.run(
        [kubectl, "apply", "--server-side", "-n", namespace, "-f", str(path), *extra],
        env=server.kubectl_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kubectl rejected {path.name}:\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_accepted_by_the_api_server_and_by_driftloop(
    name: str, kube_api_server: FullKubeAPIServer, kubectl: str, kube_namespace: str
) -> None:
    path = MANIFEST_DIR / name
    docs = load_manifests(path)
    for doc in docs:
        assert validate(doc) == [], f"driftloop's validator rejects {name}"
    # The manifests pin their own namespace; make kubectl target it rather than fight it.
    namespace = docs[0].get("metadata", {}).get("namespace", kube_namespace)
    kube_api_server.create_namespace(namespace)
    dry = kubectl_apply(kube_api_server, kubectl, path, namespace, "--dry-run=server")
    assert "serverside-applied (server dry run)" in dry
    kubectl_apply(kube_api_server, kubectl, path, namespace)
    with SeldonDeploymentClient(kube_api_server.connection(), namespace=namespace) as client:
        try:
            for doc in docs:
                stored = client.get(doc["metadata"]["name"])
                # Stored unchanged: nothing pruned (graph children are untyped in the CRD) or defaulted.
                assert stored["spec"] == doc["spec"]
        finally:
            for doc in docs:
                client.delete(doc["metadata"]["name"])


# -- rules only Seldon's webhook enforces: the API server accepts, driftloop rejects ----------------------


def _traffic_110(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][1]["traffic"] = 20


def _duplicate_predictor(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][1]["name"] = "main"


def _node_without_container(doc: dict[str, Any]) -> None:
    containers = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"]
    containers[:] = [c for c in containers if c["name"] != "bearing-temp"]


def _sklearn_without_model_uri(doc: dict[str, Any]) -> None:
    child = doc["spec"]["predictors"][0]["graph"]["children"][0]
    child["implementation"] = "SKLEARN_SERVER"
    del child["modelUri"]


def _logger_without_mode(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["graph"]["logger"] = {"url": "http://logger.seldon-logs"}


def _protocol_grpc2(doc: dict[str, Any]) -> None:
    doc["spec"]["protocol"] = "grpc2"


def _lone_predictor_50(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"][1]
    doc["spec"]["predictors"][0]["traffic"] = 50


def _two_shadows(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"] += [shadow_predictor("shadow-a"), shadow_predictor("shadow-b")]


def _router_under_v2(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["graph"]["type"] = "ROUTER"


WEBHOOK_ONLY: list[tuple[str, Mutation, str]] = [
    ("traffic-sums-to-110", _traffic_110, "spec.predictors[1].traffic"),
    ("duplicate-predictor-names", _duplicate_predictor, "spec.predictors[1].name"),
    ("node-without-implementation-or-container", _node_without_container, f"{CHILD}.name"),
    ("sklearn-server-without-modelUri", _sklearn_without_model_uri, f"{CHILD}.modelUri"),
    ("logger-without-mode", _logger_without_mode, "spec.predictors[0].graph.logger.mode"),
    ("protocol-grpc2", _protocol_grpc2, "spec.protocol"),
    ("lone-predictor-traffic-50", _lone_predictor_50, "spec.predictors[0].traffic"),
    ("two-shadows", _two_shadows, "spec.predictors[3].shadow"),
    ("router-under-protocol-v2", _router_under_v2, "spec.predictors[0].graph.type"),
]


@pytest.mark.parametrize(("mutate", "path"), [pytest.param(m, p, id=i) for i, m, p in WEBHOOK_ONLY])
def test_webhook_rule_passes_the_api_server_and_fails_driftloop(
    mutate: Mutation, path: str, sdep_client: SeldonDeploymentClient
) -> None:
    doc = canary_sdep()
    assert validate(doc) == []
    mutate(doc)
    stored = sdep_client.apply(doc)  # a real write, with kubectl's Strict field validation
    assert stored["spec"] == doc["spec"], "the API server changed the document"
    issues = validate(doc)
    assert path in [issue.path for issue in issues], f"expected an issue at {path}, got {issues}"
    assert all(issue.message for issue in issues)


# -- what the installed CRD's schema forbids: both reject, naming the same field ---------------------------


def _predictors_not_a_list(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"] = doc["spec"]["predictors"][0]


def _replicas_text(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][1]["replicas"] = "two"


def _traffic_text(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["traffic"] = "ninety"


def _no_predictors(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"]


def _predictor_without_graph(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"][0]["graph"]


def _graph_without_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"][0]["graph"]["name"]


def _logger_mode_number(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["graph"]["logger"]["mode"] = 1


def _shadow_text(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][1]["shadow"] = "yes"


def _container_without_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["name"]


def _child_without_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["predictors"][0]["graph"]["children"][0]["name"]


def _child_type_number(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["graph"]["children"][0]["type"] = 3


STRUCTURAL: list[tuple[str, Mutation]] = [
    ("predictors-not-a-list", _predictors_not_a_list),
    ("replicas-two", _replicas_text),
    ("traffic-text", _traffic_text),
    ("no-predictors", _no_predictors),
    ("predictor-without-graph", _predictor_without_graph),
    ("graph-without-name", _graph_without_name),
    ("logger-mode-number", _logger_mode_number),
    ("shadow-text", _shadow_text),
    ("container-without-name", _container_without_name),
    # Seldon's installed CRD types graph children (10 levels deep), so these are schema errors too.
    ("child-node-without-name", _child_without_name),
    ("child-node-type-number", _child_type_number),
]


def _names(field: str, issue: ValidationIssue) -> bool:
    """Does driftloop's ``issue`` name the API server's ``field``? For a missing property the API server
    names the property itself, driftloop (JSON Schema) names the object and quotes the property."""
    if issue.path == field:
        return True
    parent, _, leaf = field.rpartition(".")
    return issue.path == parent and f"'{leaf}'" in issue.message


@pytest.mark.parametrize("mutate", [pytest.param(m, id=i) for i, m in STRUCTURAL])
def test_schema_violation_is_rejected_by_both(mutate: Mutation, sdep_client: SeldonDeploymentClient) -> None:
    doc = canary_sdep()
    mutate(doc)
    # Warn, not Strict: under Strict a wrong-typed object can fail earlier as "unknown fields" (400).
    with pytest.raises(KubeAPIError) as created:
        sdep_client.create(doc, field_validation="Warn")
    assert created.value.status_code == 422, created.value
    api_fields = sorted({cause["field"] for cause in created.value.causes})
    assert api_fields, created.value
    # Server-side apply refuses it too: 422 for a missing field, 500 "failed to create typed patch
    # object" for a wrongly typed one, both naming the field.
    with pytest.raises(KubeAPIError) as applied:
        sdep_client.apply(doc)
    assert applied.value.status_code in (422, 500)
    assert any(field in str(applied.value) for field in api_fields), applied.value
    issues = validate(doc)
    for field in api_fields:
        assert any(_names(field, issue) for issue in issues), (
            f"API server: {created.value}; driftloop: {issues}"
        )
    assert sdep_client.list() == []


# -- what kubectl refuses as unknown fields (Strict field validation) --------------------------------------
# The API server's own default (Warn) and `kubectl --validate=false` drop such fields silently instead: a
# typo'd `trafic` vanishes, and children below the CRD's 10 typed levels are cut off the graph.


def _typo_in_predictor(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][1]["trafic"] = 20


def _typo_in_child(doc: dict[str, Any]) -> None:
    doc["spec"]["predictors"][0]["graph"]["children"][0]["modelURI"] = "models:/pump-bearing-temp@champion"


def _graph_deeper_than_the_crd(doc: dict[str, Any]) -> None:
    node = doc["spec"]["predictors"][0]["graph"]["children"][0]
    for level in range(2, 13):
        node["children"] = [
            {"name": f"step-{level}", "type": "TRANSFORMER", "implementation": "SIMPLE_MODEL"}
        ]
        node = node["children"][0]


UNKNOWN_FIELDS: list[tuple[str, Mutation, str]] = [
    ("typo-trafic", _typo_in_predictor, "spec.predictors[1].trafic"),
    ("typo-modelURI-in-child", _typo_in_child, f"{CHILD}.modelURI"),
    (
        "graph-deeper-than-11-levels",
        _graph_deeper_than_the_crd,
        f"spec.predictors[0].graph{'.children[0]' * 10}",
    ),
]
_unknown = [pytest.param(m, f, id=i) for i, m, f in UNKNOWN_FIELDS]


@pytest.mark.parametrize(("mutate", "field"), _unknown)
def test_unknown_field_is_refused_by_the_api_server(
    mutate: Mutation, field: str, sdep_client: SeldonDeploymentClient
) -> None:
    doc = canary_sdep()
    mutate(doc)
    with pytest.raises(KubeAPIError) as created:
        sdep_client.create(doc)
    assert created.value.status_code == 400
    assert f'unknown field "{field}' in str(created.value)


@pytest.mark.parametrize(("mutate", "field"), _unknown)
def test_unknown_field_is_refused_by_driftloop(mutate: Mutation, field: str) -> None:
    doc = canary_sdep()
    mutate(doc)
    issues = validate(doc)
    assert any(issue.path.startswith(field.rsplit(".", 1)[0]) for issue in issues), issues
