"""Typed view of the parts of a SeldonDeployment that the local runtime reads.

Build it with :meth:`Deployment.from_doc`, which validates first (:func:`validation.validate`) and
raises :class:`InvalidDeployment` listing every issue.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from driftloop.seldon_log import DEFAULT_TOPIC
from driftloop_graphs.errors import InvalidDeployment, UnsupportedLocally
from driftloop_graphs.manifest import deployment_name
from driftloop_graphs.validation import V2_PROTOCOLS, validate


class LoggerSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    mode: str
    url: str | None = None

    @property
    def logs_requests(self) -> bool:
        return self.mode in ("all", "request")

    @property
    def logs_responses(self) -> bool:
        return self.mode in ("all", "response")


class Node(BaseModel):
    """One graph node (Seldon's PredictiveUnit)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str
    type: str | None = None
    implementation: str | None = None
    model_uri: str | None = Field(default=None, alias="modelUri")
    methods: list[str] = Field(default_factory=list)
    logger: LoggerSpec | None = None
    children: list[Node] = Field(default_factory=list)

    @property
    def transforms_input(self) -> bool:
        """Called on the way in: MODEL and TRANSFORMER nodes (and nodes declaring TRANSFORM_INPUT).

        A custom node with neither type nor methods is defaulted to MODEL, as the operator does.
        """
        if self.type in ("MODEL", "TRANSFORMER") or "TRANSFORM_INPUT" in self.methods:
            return True
        return self.type is None and not self.methods

    @property
    def transforms_output(self) -> bool:
        return self.type == "OUTPUT_TRANSFORMER" or "TRANSFORM_OUTPUT" in self.methods

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def find(self, name: str) -> Node | None:
        return next((node for node in self.walk() if node.name == name), None)


class Predictor(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    traffic: int = 0
    shadow: bool = False
    graph: Node
    env: dict[str, str] = Field(default_factory=dict, description="svcOrchSpec.env (the executor's env)")
    containers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def log_topic(self) -> str:
        return self.env.get("LOGGER_KAFKA_TOPIC") or DEFAULT_TOPIC

    def nodes(self) -> list[Node]:
        return list(self.graph.walk())


class Deployment(BaseModel):
    name: str
    namespace: str = "default"
    protocol: str = "seldon"
    transport: str = "rest"
    predictors: list[Predictor]

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Deployment:
        issues = validate(doc)
        if issues:
            raise InvalidDeployment(deployment_name(doc), list(issues))
        spec = doc["spec"]
        predictors = [_predictor(p) for p in spec["predictors"]]
        return cls(
            name=doc["metadata"]["name"],
            namespace=doc["metadata"].get("namespace") or "default",
            protocol=spec.get("protocol") or "seldon",
            transport=spec.get("transport") or "rest",
            predictors=predictors,
        )

    def require_local_support(self) -> None:
        """Raise :class:`UnsupportedLocally` for valid manifests the local runtime cannot execute."""
        if self.protocol not in V2_PROTOCOLS:
            raise UnsupportedLocally(
                f"SeldonDeployment {self.name!r} uses protocol {self.protocol!r}; the local runtime runs "
                "protocol v2 graphs on MLServer only: set spec.protocol: v2"
            )
        if self.transport != "rest":
            raise UnsupportedLocally(
                f"SeldonDeployment {self.name!r} uses transport {self.transport!r}; the local ingress "
                "speaks V2 over REST: set spec.transport: rest"
            )

    @property
    def main_predictors(self) -> list[Predictor]:
        return [p for p in self.predictors if not p.shadow]

    @property
    def shadow(self) -> Predictor | None:
        return next((p for p in self.predictors if p.shadow), None)

    def predictor(self, name: str) -> Predictor | None:
        return next((p for p in self.predictors if p.name == name), None)


def _predictor(raw: dict[str, Any]) -> Predictor:
    env = {
        e["name"]: str(e.get("value", ""))
        for e in (raw.get("svcOrchSpec") or {}).get("env") or []
        if isinstance(e, dict) and "name" in e
    }
    containers: dict[str, dict[str, Any]] = {}
    for component in raw.get("componentSpecs") or []:
        for container in ((component or {}).get("spec") or {}).get("containers") or []:
            containers[container["name"]] = container
    return Predictor(
        name=raw["name"],
        traffic=raw.get("traffic", 0),
        shadow=bool(raw.get("shadow", False)),
        graph=Node.model_validate(raw["graph"]),
        env=env,
        containers=containers,
    )
