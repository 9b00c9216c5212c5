"""Structural validation against the SeldonDeployment CRD's own OpenAPI schema.

The schema shipped in ``schema/`` is the CRD's ``v1`` ``openAPIV3Schema``, so a document that passes
here passes the API server's schema validation for every field the schema types. The CRD leaves
``graph.children`` untyped (``items: {}``), so children are checked here against the graph node's
schema, recursively, as the operator does when it decodes them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError


@lru_cache(maxsize=1)
def crd_schema() -> dict[str, Any]:
    raw = resources.files("driftloop_graphs").joinpath("schema/seldondeployment-v1.json.gz").read_bytes()
    schema: dict[str, Any] = json.loads(gzip.decompress(raw))
    return schema


@lru_cache(maxsize=1)
def _validators() -> tuple[Draft7Validator, Draft7Validator]:
    schema = crd_schema()
    node_schema = schema["properties"]["spec"]["properties"]["predictors"]["items"]["properties"]["graph"]
    return Draft7Validator(schema), Draft7Validator(node_schema)


def format_path(parts: Sequence[str | int]) -> str:
    """``["spec", "predictors", 1, "traffic"]`` -> ``spec.predictors[1].traffic``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "<document>"


def _describe(error: ValidationError) -> str:
    if error.validator == "type":
        return (
            f"must be of type {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
        )
    if error.validator == "required":
        return f"required field missing ({error.message})"
    return error.message


def structural_errors(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(path, message)`` for every place ``doc`` breaks the CRD schema, including unknown fields
    (``kubectl apply`` refuses them: server-side strict field validation)."""
    document_validator, node_validator = _validators()
    for error in sorted(document_validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        yield format_path(list(error.absolute_path)), _describe(error)
    yield from unknown_fields(doc, crd_schema(), [])
    spec = doc.get("spec")
    predictors = spec.get("predictors") if isinstance(spec, dict) else None
    if not isinstance(predictors, list):
        return
    for p_index, predictor in enumerate(predictors):
        graph = predictor.get("graph") if isinstance(predictor, dict) else None
        if isinstance(graph, dict):
            yield from _children_errors(graph, ["spec", "predictors", p_index, "graph"], node_validator, 0)


def unknown_fields(instance: Any, schema: dict[str, Any], path: list[str | int]) -> Iterator[tuple[str, str]]:
    """Fields the schema does not declare (objects with ``properties`` and no ``additionalProperties``)."""
    if isinstance(instance, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
            for key, value in instance.items():
                if key in properties:
                    yield from unknown_fields(value, properties[key], [*path, key])
                elif "additionalProperties" not in schema:
                    yield (
                        format_path([*path, key]),
                        f"unknown field {key!r}: the SeldonDeployment CRD does not declare it "
                        "(kubectl refuses it; check the spelling)",
                    )
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not isinstance(properties, dict):
            for key, value in instance.items():
                yield from unknown_fields(value, extra, [*path, key])
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            yield from unknown_fields(item, schema["items"], [*path, index])


# Seldon's installed CRD types the graph GRAPH_LEVELS children deep (operator/hack/
# create_graph_openapi_schema.py); the innermost node has no ``children`` field.
GRAPH_LEVELS = 10


def _children_errors(
    node: dict[str, Any], path: list[str | int], validator: Draft7Validator, level: int
) -> Iterator[tuple[str, str]]:
    children = node.get("children")
    if not isinstance(children, list):
        return
    if level >= GRAPH_LEVELS:
        yield (
            format_path([*path, "children"]),
            f"graph deeper than Seldon's CRD allows: nodes may nest {GRAPH_LEVELS} levels of children; "
            "kubectl refuses deeper children",
        )
        return
    node_schema: dict[str, Any] = validator.schema
    for index, child in enumerate(children):
        child_path = [*path, "children", index]
        for error in validator.iter_errors(child):
            yield format_path([*child_path, *error.absolute_path]), _describe(error)
        yield from unknown_fields(child, node_schema, child_path)
        if isinstance(child, dict):
            yield from _children_errors(child, child_path, validator, level + 1)
