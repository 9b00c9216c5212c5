"""Validation of a SeldonDeployment: the CRD's structure plus the operator webhook's rules.

``validate(doc)`` returns every problem as a :class:`ValidationIssue` naming the field path and the
rule, e.g. ``spec.predictors[1].traffic: traffic of non-shadow predictors must sum to 100, got 110``.
An empty list means the document is valid: it passes the API server's schema check and the Seldon
Core v1 operator's admission webhook (DESIGN section 3), and the local runtime can execute its graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from driftloop_graphs.crd_schema import format_path, structural_errors
from driftloop_graphs.manifest import API_GROUP, KIND, SERVED_VERSIONS

PROTOCOLS = ("seldon", "tensorflow", "kfserving", "v2")
V2_PROTOCOLS = ("v2", "kfserving")
TRANSPORTS = ("rest", "grpc")
NODE_TYPES = ("UNKNOWN_TYPE", "ROUTER", "COMBINER", "MODEL", "TRANSFORMER", "OUTPUT_TRANSFORMER")
METHODS = ("TRANSFORM_INPUT", "TRANSFORM_OUTPUT", "ROUTE", "AGGREGATE", "SEND_FEEDBACK")
LOGGER_MODES = ("all", "request", "response")
ENDPOINT_TYPES = ("REST", "GRPC")
# Implementations built into the executor/operator that are not model servers.
BUILTIN_IMPLEMENTATIONS = (
    "UNKNOWN_IMPLEMENTATION",
    "SIMPLE_MODEL",
    "SIMPLE_ROUTER",
    "RANDOM_ABTEST",
    "AVERAGE_COMBINER",
)
ROUTING_IMPLEMENTATIONS = ("SIMPLE_ROUTER", "RANDOM_ABTEST", "AVERAGE_COMBINER")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class ValidationIssue:
    """One problem: ``path`` is the field (``spec.predictors[1].traffic``), ``message`` the rule broken."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def validate(doc: dict[str, Any]) -> list[ValidationIssue]:
    """Every problem in one SeldonDeployment document; ``[]`` when it is valid."""
    if not isinstance(doc, dict):
        return [ValidationIssue("<document>", f"must be a mapping, got {type(doc).__name__}")]
    issues = [ValidationIssue(path, message) for path, message in structural_errors(doc)]
    issues.extend(_header_issues(doc))
    if issues:
        # Webhook rules assume a structurally sound document, as the API server checks the schema first.
        return issues
    issues.extend(_webhook_issues(doc["spec"]))
    return issues


def _header_issues(doc: dict[str, Any]) -> Iterator[ValidationIssue]:
    api_version = doc.get("apiVersion")
    allowed = ", ".join(f"{API_GROUP}/{v}" for v in SERVED_VERSIONS)
    if api_version not in {f"{API_GROUP}/{v}" for v in SERVED_VERSIONS}:
        yield ValidationIssue("apiVersion", f"must be one of {allowed}, got {api_version!r}")
    if doc.get("kind") != KIND:
        yield ValidationIssue("kind", f"must be {KIND}, got {doc.get('kind')!r}")
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        yield ValidationIssue("metadata.name", "required: every Kubernetes object needs a name")
    elif not _DNS_LABEL.match(name) or len(name) > 63:
        yield ValidationIssue(
            "metadata.name",
            f"must be a DNS-1123 label (lower-case letters, digits, '-', at most 63), got {name!r}",
        )
    if "spec" not in doc:
        yield ValidationIssue("spec", "required: a SeldonDeployment needs spec.predictors")


def _webhook_issues(spec: dict[str, Any]) -> Iterator[ValidationIssue]:
    protocol = spec.get("protocol", "seldon")
    if protocol not in PROTOCOLS:
        yield ValidationIssue("spec.protocol", f"must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    transport = spec.get("transport", "rest")
    if transport not in TRANSPORTS:
        yield ValidationIssue("spec.transport", f"must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    predictors: list[dict[str, Any]] = spec["predictors"]
    if not predictors:
        yield ValidationIssue("spec.predictors", "at least one predictor is required")
        return
    yield from _predictor_set_issues(predictors)
    for index, predictor in enumerate(predictors):
        base: list[str | int] = ["spec", "predictors", index]
        containers = _container_names(predictor)
        seen_nodes: set[str] = set()
        for path, node in _walk(predictor["graph"], [*base, "graph"]):
            yield from _node_issues(node, path, containers, seen_nodes, protocol, transport)


def _predictor_set_issues(predictors: list[dict[str, Any]]) -> Iterator[ValidationIssue]:
    names: set[str] = set()
    for index, predictor in enumerate(predictors):
        if predictor["name"] in names:
            yield ValidationIssue(
                f"spec.predictors[{index}].name",
                f"predictor names must be unique, {predictor['name']!r} is used twice",
            )
        names.add(predictor["name"])
        traffic = predictor.get("traffic", 0)
        if not 0 <= traffic <= 100:
            yield ValidationIssue(f"spec.predictors[{index}].traffic", f"must be 0..100, got {traffic}")
    shadows = [i for i, p in enumerate(predictors) if p.get("shadow")]
    main = [i for i, p in enumerate(predictors) if not p.get("shadow")]
    for index in shadows[1:]:
        yield ValidationIssue(
            f"spec.predictors[{index}].shadow",
            f"at most one shadow predictor is allowed, found {len(shadows)}",
        )
    if not main:
        yield ValidationIssue(
            f"spec.predictors[{shadows[0]}].shadow",
            "a shadow predictor cannot be the only predictor: add a predictor that serves the traffic",
        )
        return
    if len(main) > 1:
        total = sum(predictors[i].get("traffic", 0) for i in main)
        if total != 100:
            yield ValidationIssue(
                f"spec.predictors[{main[-1]}].traffic",
                f"traffic of non-shadow predictors must sum to 100, got {total}",
            )
    else:
        traffic = predictors[main[0]].get("traffic", 0)
        if 0 < traffic < 100:
            yield ValidationIssue(
                f"spec.predictors[{main[0]}].traffic",
                f"a lone predictor takes all traffic: set traffic to 100 or leave it out, got {traffic}",
            )


def _container_names(predictor: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for component in predictor.get("componentSpecs") or []:
        pod = (component or {}).get("spec") or {}
        for container in pod.get("containers") or []:
            if isinstance(container, dict) and isinstance(container.get("name"), str):
                names.add(container["name"])
    return names


def _walk(node: dict[str, Any], path: list[str | int]) -> Iterator[tuple[list[str | int], dict[str, Any]]]:
    yield path, node
    for index, child in enumerate(node.get("children") or []):
        yield from _walk(child, [*path, "children", index])


def _node_issues(
    node: dict[str, Any],
    path: list[str | int],
    containers: set[str],
    seen: set[str],
    protocol: str,
    transport: str,
) -> Iterator[ValidationIssue]:
    name = node["name"]
    where = format_path(path)
    if name in seen:
        yield ValidationIssue(
            f"{where}.name", f"graph node names must be unique in a predictor, {name!r} repeats"
        )
    seen.add(name)
    node_type = node.get("type")
    if node_type is not None and node_type not in NODE_TYPES:
        yield ValidationIssue(f"{where}.type", f"must be one of {', '.join(NODE_TYPES)}, got {node_type!r}")
    methods = node.get("methods") or []
    for m_index, method in enumerate(methods):
        if method not in METHODS:
            yield ValidationIssue(f"{where}.methods[{m_index}]", f"must be one of {', '.join(METHODS)}")
    implementation = node.get("implementation")
    if implementation is None:
        if name not in containers:
            yield ValidationIssue(
                f"{where}.name",
                f"node {name!r} has no implementation, so componentSpecs[].spec.containers needs a "
                f"container named {name!r}",
            )
        if node_type is None and not methods:
            yield ValidationIssue(
                f"{where}.type",
                "a node without implementation needs a type (MODEL, TRANSFORMER, ...) or methods",
            )
    elif implementation not in BUILTIN_IMPLEMENTATIONS and not node.get("modelUri"):
        yield ValidationIssue(
            f"{where}.modelUri",
            f"prepackaged server {implementation} needs modelUri (where the server loads the model from)",
        )
    logger = node.get("logger")
    if logger is not None:
        mode = logger.get("mode")
        if mode is None:
            yield ValidationIssue(
                f"{where}.logger.mode", "required when logger is set: all, request or response"
            )
        elif mode not in LOGGER_MODES:
            yield ValidationIssue(
                f"{where}.logger.mode", f"must be one of {', '.join(LOGGER_MODES)}, got {mode!r}"
            )
    endpoint_type = (node.get("endpoint") or {}).get("type")
    if endpoint_type is not None and endpoint_type not in ENDPOINT_TYPES:
        yield ValidationIssue(f"{where}.endpoint.type", f"must be REST or GRPC, got {endpoint_type!r}")
    if protocol in V2_PROTOCOLS:
        yield from _v2_issues(node, where, transport, endpoint_type)


def _v2_issues(
    node: dict[str, Any], where: str, transport: str, endpoint_type: str | None
) -> Iterator[ValidationIssue]:
    node_type = node.get("type")
    methods = node.get("methods") or []
    if node_type in ("ROUTER", "COMBINER") or node.get("implementation") in ROUTING_IMPLEMENTATIONS:
        kind = node_type or node.get("implementation")
        yield ValidationIssue(
            f"{where}.type",
            f"{kind} nodes are not supported with protocol v2: Seldon's executor calls "
            "/v2/models/<m>/route and /aggregate, which MLServer does not serve; use a linear chain "
            "of MODEL / TRANSFORMER / OUTPUT_TRANSFORMER nodes, or split traffic with predictors",
        )
    for m_index, method in enumerate(methods):
        if method in ("ROUTE", "AGGREGATE"):
            yield ValidationIssue(
                f"{where}.methods[{m_index}]",
                f"{method} is not supported with protocol v2 (MLServer serves no route/aggregate endpoint)",
            )
    is_transformer = node_type in ("TRANSFORMER", "OUTPUT_TRANSFORMER") or any(
        m in ("TRANSFORM_INPUT", "TRANSFORM_OUTPUT") for m in methods
    )
    grpc = endpoint_type == "GRPC" or (endpoint_type is None and transport == "grpc")
    if is_transformer and grpc:
        yield ValidationIssue(
            f"{where}.endpoint.type" if endpoint_type else "spec.transport",
            "gRPC transformers are not implemented by Seldon's executor for protocol v2: "
            "use transport: rest (endpoint.type: REST) for graphs with transformers",
        )
