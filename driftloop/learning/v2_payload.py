"""V2 (Open Inference Protocol) payloads for the forecaster's graph (docs/CONTRACTS.md).

>>> import numpy as np
>>> body = features_request(np.ones((2, 3)), asset_ids=["pump-01", "pump-02"], event_times=[0.0, 0.0])
>>> [(i["name"], i["datatype"], i["shape"]) for i in body["inputs"]]
[('features', 'FP64', [2, 3]), ('asset_id', 'BYTES', [2]), ('event_time', 'FP64', [2])]
>>> chained = as_next_node_request({"id": "r1", "model_name": "bearing-outlier", "outputs": body["inputs"]})
>>> sorted(chained)
['id', 'inputs', 'model_name']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def features_request(
    X: np.ndarray,
    *,
    asset_ids: Sequence[str] | None = None,
    event_times: Sequence[float] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The request: ``features`` FP64 [N, F]; optional ``asset_id`` BYTES and ``event_time`` FP64 [N]."""
    X = np.asarray(X, dtype=float)
    inputs: list[dict[str, Any]] = [
        {"name": "features", "datatype": "FP64", "shape": list(X.shape), "data": X.ravel().tolist()}
    ]
    if asset_ids is not None:
        inputs.append(
            {"name": "asset_id", "datatype": "BYTES", "shape": [len(asset_ids)], "data": list(asset_ids)}
        )
    if event_times is not None:
        times = [float(t) for t in event_times]
        inputs.append({"name": "event_time", "datatype": "FP64", "shape": [len(times)], "data": times})
    body: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        body["id"] = request_id
    return body


def as_next_node_request(response: Mapping[str, Any]) -> dict[str, Any]:
    """What Seldon's executor sends to the next node of a v2 chain: the previous response with
    ``outputs`` renamed to ``inputs`` and every other key kept (DESIGN section 3)."""
    request = {key: value for key, value in response.items() if key != "outputs"}
    request["inputs"] = response.get("outputs", [])
    return request


def output_values(response: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Output tensors of a V2 response by name, data as flat lists."""
    return {out["name"]: list(out["data"]) for out in response.get("outputs", [])}
