"""Builders of Seldon request-log events exactly as the executor writes them (raw V2 JSON value,
Seldon headers, no key)."""

from __future__ import annotations

import json
from typing import Any

from driftloop.seldon_log import TYPE_REQUEST, TYPE_RESPONSE, LogEvent


def v2_request(
    features: list[list[float]], assets: list[str] | None = None, times: list[float] | None = None
) -> bytes:
    inputs: list[dict[str, Any]] = [
        {
            "name": "features",
            "shape": [len(features), len(features[0])],
            "datatype": "FP64",
            "data": [x for row in features for x in row],
        }
    ]
    if assets is not None:
        inputs.append({"name": "asset_id", "shape": [len(assets)], "datatype": "BYTES", "data": assets})
    if times is not None:
        inputs.append({"name": "event_time", "shape": [len(times)], "datatype": "FP64", "data": times})
    return json.dumps({"inputs": inputs}).encode()


def v2_response(predictions: list[float], version: str = "3", horizon_s: float | None = None) -> bytes:
    params: dict[str, Any] = {"model_version": version}
    if horizon_s is not None:
        params["horizon_s"] = horizon_s
    return json.dumps(
        {
            "model_name": "bearing-temp",
            "model_version": version,
            "parameters": params,
            "outputs": [
                {"name": "prediction", "shape": [len(predictions)], "datatype": "FP64", "data": predictions}
            ],
        }
    ).encode()


def event(kind: str, request_id: str, model_id: str, payload: bytes, endpoint: str = "default") -> LogEvent:
    return LogEvent(
        type=TYPE_REQUEST if kind == "request" else TYPE_RESPONSE,
        request_id=request_id,
        model_id=model_id,
        deployment="pump-bearing-temp",
        namespace="default",
        endpoint=endpoint,
        protocol="v2",
        content_type="application/json",
        payload=payload,
    )


def chain_events(
    request_id: str,
    features: list[list[float]],
    predictions: list[float],
    assets: list[str] | None = None,
    times: list[float] | None = None,
    horizon_s: float | None = None,
    endpoint: str = "default",
) -> list[LogEvent]:
    """The four events of the reference graph: outlier request/response, model request/response."""
    req = v2_request(features, assets, times)
    outlier_out = json.loads(req)
    outlier_out["outputs"] = [
        *outlier_out.pop("inputs"),
        {
            "name": "outlier_flag",
            "shape": [len(features)],
            "datatype": "BOOL",
            "data": [False] * len(features),
        },
    ]
    model_in = {"inputs": outlier_out["outputs"]}
    return [
        event("request", request_id, "bearing-outlier", req, endpoint),
        event("response", request_id, "bearing-outlier", json.dumps(outlier_out).encode(), endpoint),
        event("request", request_id, "bearing-temp", json.dumps(model_in).encode(), endpoint),
        event(
            "response", request_id, "bearing-temp", v2_response(predictions, horizon_s=horizon_s), endpoint
        ),
    ]
