"""Online learning through the ingress: ``POST /seldon/<ns>/<name>/v2/models[/<model>]/learn``.

A model runtime that opted in (``IncrementalModelRuntime`` with ``parameters.extra.online_learning``)
answers ``POST /v2/models/<model>/learn`` on its MLServer: a V2 inference request whose inputs are the
features plus ``truth``, learned in place (Seldon Core v1's ``send_feedback`` for online models). The
ingress forwards the client's body, unchanged, to that route of the named node in **every** predictor
of the deployment (main, canary and shadow: each copy keeps learning whatever share of the inference
traffic it serves), all at once; without a model in the path, to every MODEL node. Once every node
answered 2xx it answers 200 ``{"nodes": [{"predictor", "node", "learned", "samples_seen",
"model_version"}, ...]}`` (deployment order, then graph order).

A learn call is not inference: the traffic split picks nothing, nothing is written to the request log.
A node's 4xx reaches the client with its status and the node's message (``node_refused``); a node's
other answer, or a node that cannot be reached, is 502 ``node_error`` naming the node and predictor and
nothing of the node's internals. When several nodes fail, a refusal wins (sending the same body again
would be refused again); the message names the nodes that learned meanwhile and the others that failed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from driftloop_graphs.errors import error_body
from driftloop_graphs.executor import PredictorExecutor, node_message
from driftloop_graphs.spec import Node
from driftloop_graphs.upstream import UpstreamError

NO_ROUTE_HINT = (
    "its MLServer serves no learn route: online learning needs a model runtime that serves one, e.g. "
    "driftloop_servers.model_runtime.IncrementalModelRuntime with parameters.extra.online_learning: true "
    "in the node's model-settings.json"
)


def is_model(node: Node) -> bool:
    """A MODEL node (a custom node with neither type nor methods defaults to MODEL, as in Seldon)."""
    return node.type == "MODEL" or (node.type is None and not node.methods)


@dataclass(frozen=True, slots=True)
class LearnTarget:
    """One node, in one predictor, that a learn call reaches."""

    executor: PredictorExecutor
    node: str

    @property
    def predictor(self) -> str:
        return self.executor.predictor.name

    @property
    def where(self) -> str:
        return f"graph node {self.node!r} of predictor {self.predictor!r}"


@dataclass(frozen=True, slots=True)
class Learned:
    target: LearnTarget
    learned: int
    samples_seen: int
    model_version: str | None


@dataclass(frozen=True, slots=True)
class LearnFailed:
    target: LearnTarget
    status: int  # what the client gets: the node's 4xx, else 502
    code: str
    message: str


Outcome = Learned | LearnFailed


def learn_targets(executors: list[PredictorExecutor], model: str | None) -> list[LearnTarget]:
    """The node named ``model`` in each predictor that has one, or (``None``) every MODEL node."""
    return [
        LearnTarget(executor, node.name)
        for executor in executors
        for node in executor.predictor.nodes()
        if (node.name == model if model is not None else is_model(node))
    ]


async def learn_everywhere(targets: list[LearnTarget], body: bytes, content_type: str) -> list[Outcome]:
    """Forward ``body`` to every target's learn route at once; one outcome per target, in order."""
    return list(await asyncio.gather(*(learn_on(target, body, content_type) for target in targets)))


async def learn_on(target: LearnTarget, body: bytes, content_type: str) -> Outcome:
    where = target.where
    try:
        response = await target.executor.post(f"/v2/models/{target.node}/learn", body, content_type)
    except UpstreamError as exc:
        return LearnFailed(target, 502, "node_error", f"{where} is unreachable: {exc}")
    status = response.status
    if 200 <= status < 300:
        return _learned(target, response.body)
    if 400 <= status < 500:
        said = node_message(response.body)
        message = f"{where} refused the learn call: {said or f'status {status}'}"
        if status == 404 and said in (None, "Not Found"):  # MLServer's answer to a path it does not serve
            message += f" ({NO_ROUTE_HINT})"
        return LearnFailed(target, status, "node_refused", message)
    message = (
        f"{where} failed the learn call (its MLServer answered {status}); the cause is in that "
        "MLServer's log (next to its model repository under the run directory)"
    )
    return LearnFailed(target, 502, "node_error", message)


def _learned(target: LearnTarget, body: bytes) -> Outcome:
    """A node's 2xx answer read, or a 502 saying what it lacked (the node may have learned)."""
    try:
        answer: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    problem = None
    if not isinstance(answer, dict):
        problem = "it is not a JSON object"
    else:
        for key in ("learned", "samples_seen"):
            value = answer.get(key)
            if type(value) is not int or value < 0:
                problem = f"'{key}' is not a non-negative integer"
                break
        else:
            if answer.get("model_version") is not None and not isinstance(answer["model_version"], str):
                problem = "'model_version' is not a string"
    if problem is not None:
        message = (
            f"{target.where} answered the learn call with a body the ingress cannot read ({problem}); "
            "it may have learned: check its MLServer's log"
        )
        return LearnFailed(target, 502, "bad_node_response", message)
    return Learned(target, answer["learned"], answer["samples_seen"], answer.get("model_version"))


@dataclass(frozen=True, slots=True)
class LearnAnswer:
    status: int
    body: bytes
    outcome: str  # the label of ``driftloop_ingress_learn_total``: ok, node_refused, node_error


def learn_answer(outcomes: list[Outcome]) -> LearnAnswer:
    """The client's answer to a learn call from every node's outcome (see the module docstring)."""
    failures = [o for o in outcomes if isinstance(o, LearnFailed)]
    learned = [o for o in outcomes if isinstance(o, Learned)]
    if not failures:
        nodes = [
            {
                "predictor": o.target.predictor,
                "node": o.target.node,
                "learned": o.learned,
                "samples_seen": o.samples_seen,
                "model_version": o.model_version,
            }
            for o in learned
        ]
        return LearnAnswer(200, orjson.dumps({"nodes": nodes}), "ok")
    chosen = next((f for f in failures if f.code == "node_refused"), failures[0])
    message = chosen.message
    others = [f for f in failures if f is not chosen]
    if learned:
        names = ", ".join(f"{o.target.predictor}/{o.target.node}" for o in learned)
        message += f"; learned meanwhile by {names}"
    if others:
        names = ", ".join(f"{f.target.predictor}/{f.target.node} ({f.status} {f.code})" for f in others)
        message += f"; also failed: {names}"
    outcome = "node_refused" if chosen.code == "node_refused" else "node_error"
    return LearnAnswer(chosen.status, error_body(chosen.code, message), outcome)
