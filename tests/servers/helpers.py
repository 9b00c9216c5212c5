"""Builders shared by the runtime unit tests: model folders, requests and reference data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.settings import ModelSettings
from mlserver.types import InferenceRequest

FEATURES = ["load_pct", "speed_rpm", "ambient_c"]


def reference_data(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(70, 8, n), rng.normal(1450, 40, n), rng.normal(20, 5, n)]).astype(
        np.float64
    )


def model_folder(
    root: Path, name: str, runtime: type[MLModel], *, uri: str | None = None, extra: dict[str, Any]
) -> ModelSettings:
    """Write ``root/name/model-settings.json`` like a model repository and parse it like MLServer does."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    parameters: dict[str, Any] = {"extra": extra}
    if uri is not None:
        parameters["uri"] = uri
    doc = {
        "name": name,
        "implementation": f"{runtime.__module__}.{runtime.__name__}",
        "parameters": parameters,
    }
    path = folder / "model-settings.json"
    path.write_text(json.dumps(doc))
    return ModelSettings.parse_file(str(path))


def tensor(name: str, data: Any, *, datatype: str = "FP64", shape: list[int] | None = None) -> dict[str, Any]:
    array = np.asarray(data)
    flat = array.ravel().tolist() if datatype != "BYTES" else list(array.ravel())
    return {"name": name, "datatype": datatype, "shape": shape or list(array.shape), "data": flat}


def request(*tensors: dict[str, Any], **extra: Any) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(tensors), **extra})


def output(response: Any, name: str) -> Any:
    for out in response.outputs:
        if out.name == name:
            return out
    raise AssertionError(f"no output {name!r} in {[o.name for o in response.outputs]}")
