"""The Seldon CRD as a cluster gets it: the controller-gen base is refused, the release build is not."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.kube.errors import KubeAPIError
from driftloop.kube.full_apiserver import FullKubeAPIServer
from driftloop.kube.sdep_client import SeldonDeploymentClient
from driftloop.kube.seldon_crd import GRAPH_LEVELS, SELDON_CRD_NAME, base_seldon_crd, installed_seldon_crd
from tests.kube.sdeps import canary_sdep


def _graph_schema(crd: dict[str, Any], version: int = 0) -> dict[str, Any]:
    spec = crd["spec"]["versions"][version]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    graph: dict[str, Any] = spec["properties"]["predictors"]["items"]["properties"]["graph"]
    return graph


def _typed_levels(node: dict[str, Any]) -> int:
    levels = 0
    while "children" in node["properties"]:
        node = node["properties"]["children"]["items"]
        assert node["required"] == ["name"] and node["properties"]["name"] == {"type": "string"}
        levels += 1
    return levels


def test_installed_crd_types_every_version_graph_ten_levels_deep() -> None:
    base, installed = base_seldon_crd(), installed_seldon_crd()
    assert _graph_schema(base)["properties"]["children"] == {"items": {}, "type": "array"}
    assert installed["metadata"]["name"] == SELDON_CRD_NAME
    assert [v["name"] for v in installed["spec"]["versions"]] == ["v1", "v1alpha2", "v1alpha3"]
    for version in range(3):
        assert _typed_levels(_graph_schema(installed, version)) == GRAPH_LEVELS == 10
    # Everything but the graph is the vendored base, untouched.
    for crd in (base, installed):
        for version in crd["spec"]["versions"]:
            del version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictors"][
                "items"
            ]["properties"]["graph"]
    assert base == installed


@pytest.mark.integration
def test_the_controller_gen_crd_is_not_structural_for_a_real_api_server(
    kube_api_server: FullKubeAPIServer,
) -> None:
    crd = base_seldon_crd()
    crd["metadata"]["name"] = "seldondeployments.base.driftloop.test"
    crd["spec"]["group"] = "base.driftloop.test"
    with kube_api_server.connection().http_client() as http:
        response = http.post(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", params={"dryRun": "All"}, json=crd
        )
    assert response.status_code == 422, response.text
    assert (
        "properties[graph].properties[children].items.type: Required value: "
        "must not be empty for specified array items"
    ) in response.json()["message"]


def _chain_depth(graph: dict[str, Any]) -> int:
    depth = 0
    while graph.get("children"):
        graph = graph["children"][0]
        depth += 1
    return depth


@pytest.mark.integration
def test_children_below_ten_levels_are_pruned_on_write(sdep_client: SeldonDeploymentClient) -> None:
    doc = canary_sdep("deep")
    node = doc["spec"]["predictors"][0]["graph"]["children"][0]
    for level in range(2, 13):
        child = {"name": f"step-{level}", "type": "TRANSFORMER", "implementation": "SIMPLE_MODEL"}
        node["children"] = [child]
        node = child
    assert _chain_depth(doc["spec"]["predictors"][0]["graph"]) == 12
    # kubectl create's default (Strict field validation) refuses the graph, naming the field it would drop;
    # server-side apply refuses undeclared fields whatever the field validation.
    with pytest.raises(KubeAPIError) as strict:
        sdep_client.create(doc)
    assert strict.value.status_code == 400
    assert f'unknown field "spec.predictors[0].graph{".children[0]" * 10}.children"' in str(strict.value)
    with pytest.raises(KubeAPIError) as applied:
        sdep_client.apply(doc, field_validation="Warn")
    assert "children: field not declared in schema" in str(applied.value)
    # The API server's own default (Warn: client-go, `kubectl create --validate=false`) prunes it.
    stored = sdep_client.create(doc, field_validation="Warn")
    graph = stored["spec"]["predictors"][0]["graph"]
    assert _chain_depth(graph) == GRAPH_LEVELS
    deepest = graph
    while deepest.get("children"):
        deepest = deepest["children"][0]
    assert deepest["name"] == "step-10" and "children" not in deepest
