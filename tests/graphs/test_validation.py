"""Validation: the CRD's structure, every webhook rule, and the protocol-v2 graph rules, each with a
field-named message; and what driftloop accepts is valid against the real CRD in ../shared/reference."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from driftloop_graphs.errors import InvalidDeployment, ManifestError
from driftloop_graphs.manifest import load_manifests
from driftloop_graphs.spec import Deployment
from driftloop_graphs.validation import ValidationIssue, validate

REPO = Path(__file__).resolve().parents[2]
CRD = REPO.parent / "shared" / "reference" / "seldondeployment-crd.yaml"
MANIFESTS = [*sorted((REPO / "manifests").glob("*.yaml")), REPO / "tests/graphs/manifests/echo-canary.yaml"]


def base() -> dict[str, Any]:
    return {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "pump", "namespace": "plant"},
        "spec": {
            "protocol": "v2",
            "predictors": [
                {
                    "name": "main",
                    "traffic": 90,
                    "componentSpecs": [
                        {"spec": {"containers": [{"name": "m", "image": "seldonio/mlserver:1.7.1"}]}}
                    ],
                    "graph": {"name": "m", "type": "MODEL", "logger": {"mode": "all"}},
                },
                {
                    "name": "canary",
                    "traffic": 10,
                    "graph": {
                        "name": "s",
                        "implementation": "SKLEARN_SERVER",
                        "modelUri": "models:/m@challenger",
                    },
                },
            ],
        },
    }


def messages(doc: dict[str, Any]) -> list[str]:
    return [str(issue) for issue in validate(doc)]


@pytest.fixture(scope="module")
def real_crd_validator() -> jsonschema.Draft7Validator:
    crd = yaml.load(CRD.read_text(), Loader=yaml.CSafeLoader)
    schema = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


def test_packaged_schema_is_the_reference_crd() -> None:
    crd = yaml.load(CRD.read_text(), Loader=yaml.CSafeLoader)
    reference = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")["schema"]["openAPIV3Schema"]
    packaged = REPO / "graphs/driftloop_graphs/schema/seldondeployment-v1.json.gz"
    assert json.loads(gzip.decompress(packaged.read_bytes())) == reference


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_shipped_manifests_are_valid_here_and_against_the_real_crd(
    path: Path, real_crd_validator: jsonschema.Draft7Validator
) -> None:
    for doc in load_manifests(path):
        assert validate(doc) == []
        assert list(real_crd_validator.iter_errors(doc)) == []


def test_valid_base_document(real_crd_validator: jsonschema.Draft7Validator) -> None:
    assert validate(base()) == []
    assert list(real_crd_validator.iter_errors(base())) == []


def test_issue_str_is_path_colon_message() -> None:
    issue = ValidationIssue("spec.predictors[1].traffic", "too much")
    assert str(issue) == "spec.predictors[1].traffic: too much"


def deep_chain(levels: int) -> dict[str, Any]:
    """A chain of ``levels`` nodes (SIMPLE_MODEL: no container needed), outermost first."""
    node: dict[str, Any] = {"name": f"step-{levels}", "type": "TRANSFORMER", "implementation": "SIMPLE_MODEL"}
    for level in range(levels - 1, 0, -1):
        node = {
            "name": f"step-{level}",
            "type": "TRANSFORMER",
            "implementation": "SIMPLE_MODEL",
            "children": [node],
        }
    return node


def test_ten_levels_of_children_are_fine() -> None:
    doc = mutate(lambda d: d["spec"]["predictors"][0]["graph"].update(children=[deep_chain(10)]))
    assert validate(doc) == []


def mutate(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base())
    change(doc)
    return doc


P0, P1 = "spec.predictors[0]", "spec.predictors[1]"
CASES = {
    "traffic sum": (
        lambda d: d["spec"]["predictors"][1].update(traffic=20),
        f"{P1}.traffic: traffic of non-shadow predictors must sum to 100, got 110",
    ),
    "lone predictor partial traffic": (
        lambda d: (d["spec"]["predictors"].pop(1), d["spec"]["predictors"][0].update(traffic=50)),
        f"{P0}.traffic: a lone predictor takes all traffic: set traffic to 100 or leave it out, got 50",
    ),
    "protocol": (
        lambda d: d["spec"].update(protocol="v3"),
        "spec.protocol: must be one of seldon, tensorflow, kfserving, v2, got 'v3'",
    ),
    "transport": (
        lambda d: d["spec"].update(transport="http"),
        "spec.transport: must be one of rest, grpc, got 'http'",
    ),
    "duplicate predictor": (
        lambda d: d["spec"]["predictors"][1].update(name="main"),
        f"{P1}.name: predictor names must be unique, 'main' is used twice",
    ),
    "missing container": (
        lambda d: d["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0].update(name="x"),
        f"{P0}.graph.name: node 'm' has no implementation, so componentSpecs[].spec.containers needs a "
        "container named 'm'",
    ),
    "prepackaged without modelUri": (
        lambda d: d["spec"]["predictors"][1]["graph"].pop("modelUri"),
        f"{P1}.graph.modelUri: prepackaged server SKLEARN_SERVER needs modelUri",
    ),
    "logger without mode": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(logger={"url": "http://x"}),
        f"{P0}.graph.logger.mode: required when logger is set",
    ),
    "two shadows": (
        lambda d: d["spec"]["predictors"].extend(
            [
                {**copy.deepcopy(d["spec"]["predictors"][1]), "name": "s1", "shadow": True, "traffic": 0},
                {**copy.deepcopy(d["spec"]["predictors"][1]), "name": "s2", "shadow": True, "traffic": 0},
            ]
        ),
        "spec.predictors[3].shadow: at most one shadow predictor is allowed, found 2",
    ),
    "only a shadow": (
        lambda d: (d["spec"]["predictors"].pop(0), d["spec"]["predictors"][0].update(shadow=True, traffic=0)),
        f"{P0}.shadow: a shadow predictor cannot be the only predictor",
    ),
    "router with v2": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(type="ROUTER"),
        f"{P0}.graph.type: ROUTER nodes are not supported with protocol v2",
    ),
    "combiner child with v2": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(
            children=[{"name": "c", "implementation": "AVERAGE_COMBINER"}]
        ),
        f"{P0}.graph.children[0].type: AVERAGE_COMBINER nodes are not supported with protocol v2",
    ),
    "grpc transformer": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(type="TRANSFORMER", endpoint={"type": "GRPC"}),
        f"{P0}.graph.endpoint.type: gRPC transformers are not implemented",
    ),
    "structural: traffic type": (
        lambda d: d["spec"]["predictors"][0].update(traffic="90"),
        f"{P0}.traffic: must be of type integer, got str '90'",
    ),
    "structural: predictor name missing": (
        lambda d: d["spec"]["predictors"][0].pop("name"),
        f"{P0}: required field missing ('name' is a required property)",
    ),
    "structural: child node name missing": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(children=[{"type": "MODEL"}]),
        f"{P0}.graph.children[0]: required field missing ('name' is a required property)",
    ),
    "structural: logger mode type": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(logger={"mode": 3}),
        f"{P0}.graph.logger.mode: must be of type string, got int 3",
    ),
    "unknown field (typo)": (
        lambda d: d["spec"]["predictors"][1].update(trafic=10),
        f"{P1}.trafic: unknown field 'trafic': the SeldonDeployment CRD does not declare it",
    ),
    "unknown field in a child node": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(children=[{"name": "m", "modelURI": "x"}]),
        f"{P0}.graph.children[0].modelURI: unknown field 'modelURI'",
    ),
    "graph deeper than the installed CRD": (
        lambda d: d["spec"]["predictors"][0]["graph"].update(children=[deep_chain(11)]),
        f"{P0}.graph{'.children[0]' * 10}.children: graph deeper than Seldon's CRD allows",
    ),
    "metadata name": (
        lambda d: d["metadata"].update(name="Pump_1"),
        "metadata.name: must be a DNS-1123 label",
    ),
}


@pytest.mark.parametrize("change,expected", CASES.values(), ids=CASES.keys())
def test_each_rule_names_the_field_and_the_rule(change: Any, expected: str) -> None:
    found = messages(mutate(change))
    assert any(message.startswith(expected) for message in found), found


def test_webhook_rejections_would_pass_the_crd_schema(real_crd_validator: jsonschema.Draft7Validator) -> None:
    """The webhook rules catch what the schema cannot: these documents are schema-valid."""
    for name in ("traffic sum", "protocol", "two shadows", "logger without mode", "router with v2"):
        doc = mutate(CASES[name][0])
        assert list(real_crd_validator.iter_errors(doc)) == []
        assert validate(doc), name


def test_from_doc_raises_with_every_issue() -> None:
    doc = mutate(lambda d: (d["spec"].update(protocol="v3"), d["spec"]["predictors"][1].update(traffic=5)))
    with pytest.raises(InvalidDeployment) as caught:
        Deployment.from_doc(doc)
    assert len(caught.value.issues) == 2
    assert "spec.protocol" in str(caught.value) and "spec.predictors[1].traffic" in str(caught.value)


def test_multi_document_file_skips_other_kinds(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}, base()])
    )
    docs = load_manifests(path)
    assert [d["kind"] for d in docs] == ["SeldonDeployment"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a: [", "is not valid YAML"),
        ("- 1\n- 2\n", "is not a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\n", "holds no SeldonDeployment"),
    ],
)
def test_unreadable_manifests_say_why(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ManifestError, match=expected):
        load_manifests(path)
