"""Reading and writing V2 tensors, with 400 errors that name the tensor and say what was wrong.

Shared by the three runtimes so each one checks its inputs the same way: find a tensor by name, decode it
to a numeric matrix of the expected width, and apply the declared policy for NaN/inf/null values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, MetadataTensor, RequestInput, ResponseOutput

from driftloop_servers.errors import InvalidTensor

NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)


def datatype_name(tensor: RequestInput) -> str:
    """MLServer stores the datatype as a plain string after validation; accept the enum too."""
    return str(getattr(tensor.datatype, "value", tensor.datatype))


def find_input(request: InferenceRequest, name: str) -> RequestInput:
    """The input tensor called ``name``; a 400 listing the received names when it is absent."""
    for tensor in request.inputs:
        if tensor.name == name:
            return tensor
    received = ", ".join(repr(t.name) for t in request.inputs) or "none"
    raise InvalidTensor(f"missing input tensor {name!r}; received tensors: {received}")


def optional_input(request: InferenceRequest, name: str) -> RequestInput | None:
    return next((t for t in request.inputs if t.name == name), None)


def _flat_data(tensor: RequestInput) -> list[object]:
    data = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
    if not isinstance(data, list):
        return [data]
    flat: list[object] = []
    stack: list[object] = [data]
    # iterative flatten in order: nested lists like [[1, 2], [3, 4]] are allowed by the V2 JSON protocol
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def decode_matrix(tensor: RequestInput, n_features: int | None) -> np.ndarray:
    """Decode a numeric tensor of shape [N, F] (or [F] for one row) to a float64 matrix.

    Non-finite values and ``null`` (how MLServer encodes NaN) come out as NaN/inf; the caller applies its
    non-finite policy. F is checked against ``n_features`` when given.
    """
    name = tensor.name
    datatype = datatype_name(tensor)
    if datatype not in NUMERIC_DATATYPES:
        raise InvalidTensor(
            f"input tensor {name!r} has datatype {datatype}; expected a numeric datatype "
            "such as FP64 (or FP32/INT64)"
        )
    shape = list(tensor.shape)
    expected = f"[N, {n_features}]" if n_features is not None else "[N, F]"
    if len(shape) == 1 and n_features is not None and shape[0] == n_features:
        shape = [1, n_features]
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise InvalidTensor(f"input tensor {name!r} has shape {list(tensor.shape)}; expected {expected}")
    if n_features is not None and shape[1] != n_features:
        raise InvalidTensor(
            f"input tensor {name!r} has shape {list(tensor.shape)}; expected {expected} "
            f"({n_features} features in the order of feature_names)"
        )
    raw = tensor.data.root if hasattr(tensor.data, "root") else tensor.data
    try:
        fast = np.asarray(raw)
    except ValueError:  # ragged nesting
        fast = np.asarray([None])
    numeric = fast.dtype.kind in "fiu"
    matrix = fast.astype(np.float64, copy=False).ravel() if numeric else _decode_slow(tensor)
    if matrix.size != shape[0] * shape[1]:
        raise InvalidTensor(
            f"input tensor {name!r} declares shape {list(tensor.shape)} ({shape[0] * shape[1]} values) "
            f"but carries {matrix.size} values"
        )
    return matrix.reshape(shape[0], shape[1])


def _decode_slow(tensor: RequestInput) -> np.ndarray:
    flat = _flat_data(tensor)
    values = [math.nan if v is None else v for v in flat]
    if any(isinstance(v, (str, bytes, bool, dict)) for v in values):
        raise InvalidTensor(f"input tensor {tensor.name!r} holds non-numeric values; expected numbers")
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidTensor(f"input tensor {tensor.name!r} holds values that are not numbers") from None


def nonfinite_rows(matrix: np.ndarray) -> np.ndarray:
    """Boolean [N]: rows holding NaN, inf or null."""
    return np.asarray(~np.isfinite(matrix).all(axis=1))


def describe_nonfinite(name: str, matrix: np.ndarray, feature_names: Sequence[str] | None) -> str:
    rows, cols = np.nonzero(~np.isfinite(matrix))
    row, col = int(rows[0]), int(cols[0])
    column = feature_names[col] if feature_names is not None else f"column {col}"
    return (
        f"input tensor {name!r} holds {len(rows)} NaN/inf/null value(s), first at row {row} ({column}); "
        "send finite values or choose another nonfinite_policy"
    )


def check_batch_size(tensor: RequestInput, n_rows: int) -> None:
    """A carried per-row tensor must have as many rows as the feature tensor."""
    if not tensor.shape or tensor.shape[0] != n_rows:
        raise InvalidTensor(
            f"input tensor {tensor.name!r} has shape {list(tensor.shape)}; expected {n_rows} rows like the "
            "feature tensor"
        )


def passthrough(tensor: RequestInput) -> ResponseOutput:
    """The input tensor as an output: same name, datatype, shape, parameters and data."""
    return ResponseOutput(
        name=tensor.name,
        shape=list(tensor.shape),
        datatype=tensor.datatype,
        parameters=tensor.parameters,
        data=tensor.data,
    )


def _json_floats(values: np.ndarray) -> list[float | None]:
    # MLServer's own codec writes NaN as null; JSON has no NaN/inf
    flat = values.astype(np.float64, copy=False).ravel()
    if np.isfinite(flat).all():
        return flat.tolist()
    return [float(v) if math.isfinite(v) else None for v in flat.tolist()]


def fp64_output(name: str, values: np.ndarray) -> ResponseOutput:
    array = np.asarray(values, dtype=np.float64)
    return ResponseOutput(name=name, shape=list(array.shape), datatype="FP64", data=_json_floats(array))


def bool_output(name: str, values: np.ndarray) -> ResponseOutput:
    array = np.asarray(values, dtype=bool)
    return ResponseOutput(name=name, shape=list(array.shape), datatype="BOOL", data=array.ravel().tolist())


@dataclass(frozen=True)
class FeatureBatch:
    """The decoded feature matrix and which rows held non-finite values."""

    matrix: np.ndarray
    nonfinite: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])


def describe_tensors(
    model: MLModel, inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]
) -> None:
    """Publish tensor metadata (``GET /v2/models/<m>``) unless the model-settings.json declares its own."""
    if not model.settings.inputs:
        model.inputs = [MetadataTensor(name=n, datatype=d, shape=s) for n, d, s in inputs]
    if not model.settings.outputs:
        model.outputs = [MetadataTensor(name=n, datatype=d, shape=s) for n, d, s in outputs]


def check_requested_outputs(request: InferenceRequest, available: Sequence[str]) -> None:
    """Refuse (400) a request whose ``outputs`` names an output this runtime does not produce."""
    unknown = [r.name for r in request.outputs or () if r.name not in available]
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise InvalidTensor(
            f"requested output(s) {names} not produced; available: {', '.join(map(repr, available))}"
        )


def requested_outputs(request: InferenceRequest, outputs: list[ResponseOutput]) -> list[ResponseOutput]:
    """Only the outputs the request names in ``outputs`` (V2), in that order; all when it names none."""
    if not request.outputs:
        return outputs
    check_requested_outputs(request, [o.name for o in outputs])
    by_name = {o.name: o for o in outputs}
    return [by_name[r.name] for r in request.outputs]
