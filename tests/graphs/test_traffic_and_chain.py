"""Unit tests: the traffic table (stable per puid, weights within binomial tolerance, validation)
and Seldon's outputs -> inputs chaining."""

from __future__ import annotations

import math
import uuid

import orjson
import pytest
from driftloop_graphs.executor import Payload, chain
from driftloop_graphs.traffic import InvalidTraffic, TrafficTable


def test_assignment_is_stable_per_puid() -> None:
    table = TrafficTable.build({"main": 50, "canary": 50}, ["main", "canary"])
    puids = [str(uuid.uuid4()) for _ in range(200)]
    assert [table.choose(p) for p in puids] == [table.choose(p) for p in puids]


@pytest.mark.parametrize("canary", [1, 10, 25, 50])
def test_weights_within_binomial_tolerance(canary: int) -> None:
    table = TrafficTable.build({"main": 100 - canary, "canary": canary}, ["main", "canary"])
    n = 50_000
    hits = sum(table.choose(f"req-{i}") == "canary" for i in range(n))
    p = canary / 100
    assert abs(hits - n * p) <= 4 * math.sqrt(n * p * (1 - p)), hits


def test_zero_weight_gets_nothing_and_lone_predictor_gets_all() -> None:
    table = TrafficTable.build({"main": 100, "canary": 0}, ["main", "canary"])
    assert {table.choose(str(i)) for i in range(2000)} == {"main"}
    assert TrafficTable.build({"main": 0}, ["main"]).as_dict() == {"main": 100}


@pytest.mark.parametrize(
    "weights,match",
    [
        ({"main": 90, "canary": 20}, "must sum to 100, got 110"),
        ({"main": 90, "other": 10}, r"unknown predictor\(s\) \['other'\]"),
        ({"main": 110, "canary": -10}, "integers 0..100"),
    ],
)
def test_invalid_weights_are_refused(weights: dict[str, int], match: str) -> None:
    with pytest.raises(InvalidTraffic, match=match):
        TrafficTable.build(weights, ["main", "canary"])


def test_chain_renames_outputs_and_keeps_every_other_key() -> None:
    response = {
        "model_name": "a",
        "id": "r1",
        "parameters": {"k": 1},
        "outputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}],
    }
    chained = orjson.loads(chain(Payload(orjson.dumps(response))).body)
    assert chained == {
        "model_name": "a",
        "id": "r1",
        "parameters": {"k": 1},
        "inputs": response["outputs"],
    }


def test_chain_passes_a_request_with_inputs_unchanged() -> None:
    payload = Payload(b'{"inputs": [], "outputs": []}')
    assert chain(payload) is payload


@pytest.mark.parametrize(
    "body,match", [(b"nope", "not JSON"), (b"[]", "not a JSON object"), (b"{}", "neither")]
)
def test_chain_explains_what_cannot_be_chained(body: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        chain(Payload(body))
