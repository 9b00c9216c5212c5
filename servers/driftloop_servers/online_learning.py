"""Online learning on a served model: the request side of ``POST /v2/models/{model_name}/learn``.

The route (docs/runtimes.md "Online learning") takes a V2 inference request holding the feature tensor an
inference call takes plus ``truth`` (the label of each row) and makes the served estimator ``partial_fit``
those rows in place. This module owns what is independent of the runtime: the body's parsing, the
``truth`` tensor's checks, a classifier's truth mapped onto its classes, the refusal error (with the reason
it is counted under), the table of loaded runtimes the route is dispatched through, and the check that
refuses online learning inside an MLServer parallel worker.

>>> truth_as_classes(np.array([1.0, 0.0]), np.array([0, 1, 2]), [0, 1, 2]).tolist()
[1, 0]
>>> try:
...     truth_as_classes(np.array([3.0, 1.0]), np.array([0, 1, 2]), [0, 1, 2])
... except LearnRefused as exc:
...     print(exc.status_code, exc.reason, str(exc).split(";")[0])
422 unknown_class truth value(s) [3.0] are not classes of the model (its classes: [0, 1, 2])
"""

from __future__ import annotations

import json
import multiprocessing
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import Request, status
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest
from pydantic import ValidationError

from driftloop_servers.errors import InvalidTensor
from driftloop_servers.tensors import datatype_name, decode_matrix, optional_input

if TYPE_CHECKING:
    from driftloop_servers.model_runtime import IncrementalModelRuntime

LEARN_PATH = "/v2/models/{model_name}/learn"
TRUTH_TENSOR = "truth"
HOW_TO_ENABLE = (
    'set "online_learning": true in parameters.extra of its model-settings.json (or '
    "DRIFTLOOP_MODEL_ONLINE_LEARNING=true) and reload it, with MLSERVER_PARALLEL_WORKERS=0"
)


async def request_body(request: Request) -> bytes:
    """The raw body, as a FastAPI dependency of the route: with parallel workers MLServer pickles the route's
    arguments to a worker, and a ``Request`` does not pickle (the bytes do)."""
    return await request.body()


class LearnRefused(MLServerError):
    """A learn call refused; ``reason`` is its label on ``driftloop_online_learn_refused_total``."""

    def __init__(self, msg: str, reason: str, status_code: int = status.HTTP_400_BAD_REQUEST) -> None:
        super().__init__(msg, status_code)
        self.reason = reason


def parse_body(body: bytes) -> InferenceRequest:
    """The body as a V2 inference request: 400 when it is not JSON, 422 when it is not a V2 request."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LearnRefused(
            f"the body is not valid JSON ({exc}); send a V2 inference request", "body"
        ) from None
    if not isinstance(doc, dict):
        raise LearnRefused(
            f"the body is a JSON {type(doc).__name__}; send a V2 inference request (an object with inputs)",
            "body",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    try:
        return InferenceRequest.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise LearnRefused(
            f"the body is not a V2 inference request ({problems})",
            "body",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        ) from None


def decode_truth(request: InferenceRequest, n_rows: int) -> np.ndarray:
    """The ``truth`` tensor as float64 [N]: shape [N] or [N, 1], numbers, finite, one per feature row."""
    tensor = optional_input(request, TRUTH_TENSOR)
    if tensor is None:
        received = ", ".join(repr(t.name) for t in request.inputs) or "none"
        raise LearnRefused(
            f"missing input tensor {TRUTH_TENSOR!r} (FP64 or INT64 [N], the label of each row); "
            f"received tensors: {received}",
            "truth_missing",
        )
    shape = list(tensor.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise LearnRefused(
            f"input tensor {TRUTH_TENSOR!r} has shape {shape}; expected [N] or [N, 1]", "truth_invalid"
        )
    if shape[0] != n_rows:
        raise LearnRefused(
            f"input tensor {TRUTH_TENSOR!r} has {shape[0]} rows but the feature tensor has {n_rows}; "
            "send one truth per feature row",
            "truth_rows",
        )
    if datatype_name(tensor) in ("BOOL", "BYTES"):
        raise LearnRefused(
            f"input tensor {TRUTH_TENSOR!r} has datatype {datatype_name(tensor)}; expected FP64 or INT64 "
            "numbers",
            "truth_invalid",
        )
    try:
        values = decode_matrix(tensor.model_copy(update={"shape": [shape[0], 1]}), 1)[:, 0]
    except InvalidTensor as exc:
        raise LearnRefused(str(exc), "truth_invalid") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise LearnRefused(
            f"input tensor {TRUTH_TENSOR!r} holds {bad.size} NaN/inf/null value(s), first at row "
            f"{int(bad[0])}; every truth must be a finite number",
            "truth_nonfinite",
        )
    return values


def truth_as_classes(truth: np.ndarray, classes: np.ndarray, values: list[Any]) -> np.ndarray:
    """Each truth number as the estimator's own class object (``classes`` = its ``classes_``, ``values``
    the same as JSON numbers); a value that is no class is refused (422) naming it and the classes."""
    index = {float(v): i for i, v in enumerate(values)}
    numbers = truth.tolist()
    unknown = sorted({v for v in numbers if v not in index})
    if unknown:
        raise LearnRefused(
            f"truth value(s) {unknown[:10]} are not classes of the model (its classes: {values}); online "
            "learning cannot add a class: retrain with it",
            "unknown_class",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return np.asarray(classes)[[index[v] for v in numbers]]


def in_parallel_worker() -> bool:
    """Whether this process is one of MLServer's parallel inference workers (each holds its own copy)."""
    from mlserver.parallel.worker import Worker

    return isinstance(multiprocessing.current_process(), Worker)


class LoadedRuntimes:
    """The ``IncrementalModelRuntime`` serving each model name in this process (weakly held).

    MLServer adds a custom route per loaded model, but the path is a template: the first model's route
    answers every model's calls. The route therefore finds the runtime the path names here. A reload
    registers the new runtime when its ``load()`` ends; the old one leaves only if it is still the entry.
    """

    def __init__(self) -> None:
        self._by_name: weakref.WeakValueDictionary[str, IncrementalModelRuntime] = (
            weakref.WeakValueDictionary()
        )

    def register(self, runtime: IncrementalModelRuntime) -> None:
        self._by_name[runtime.name] = runtime

    def unregister(self, runtime: IncrementalModelRuntime) -> None:
        if self._by_name.get(runtime.name) is runtime:
            del self._by_name[runtime.name]

    def get(self, name: str) -> IncrementalModelRuntime | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name.keys())


LOADED = LoadedRuntimes()
