"""Runtime overhead benchmark: ``python -m bench runtimes``.

In-process, same rows, same process: each driftloop runtime's ``predict`` (V2 request in, V2 response
out: tensor lookup, decoding, checks, counters, encoding) against the bare estimator/detector call it
wraps, in alternating rounds (fastest round of each), printed as ratios (runtime / bare; 1.00 = no
overhead). Then the permissive backend against
alibi-detect for the same detector family. HTTP serving is measured by the serving benchmark.
``DRIFTLOOP_BENCH_QUICK=1`` runs a tenth of the calls.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from driftloop_servers.detectors import fit_drift_detector, fit_outlier_detector, save_detector
from driftloop_servers.drift_runtime import DriftRuntime
from driftloop_servers.model_runtime import IncrementalModelRuntime
from driftloop_servers.outlier_runtime import OutlierRuntime
from mlserver import MLModel
from mlserver.settings import ModelParameters, ModelSettings
from mlserver.types import InferenceRequest
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

QUICK = os.environ.get("DRIFTLOOP_BENCH_QUICK") == "1"
CALLS = 200 if QUICK else 2000
F = 8
NAMES = [f"f{i}" for i in range(F)]


ROUNDS = 5


def _timed(fn: Callable[[], Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


async def _timed_async(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls * 1e6


async def interleaved_us(
    runtime_call: Callable[[], Awaitable[Any]], bare_call: Callable[[], Any], calls: int
) -> tuple[float, float]:
    """Per-call microseconds of both, measured in alternating rounds; the fastest round of each counts
    (the machine is shared, so the minimum is the least disturbed estimate)."""
    per_round = max(1, calls // ROUNDS)
    await _timed_async(runtime_call, max(5, per_round // 5))  # warm-up
    _timed(bare_call, max(5, per_round // 5))
    runtime_us, bare_us = [], []
    for _ in range(ROUNDS):
        bare_us.append(_timed(bare_call, per_round))
        runtime_us.append(await _timed_async(runtime_call, per_round))
    return min(runtime_us), min(bare_us)


def v2_request(x: np.ndarray) -> InferenceRequest:
    return InferenceRequest.model_validate(
        {
            "inputs": [
                {"name": "features", "datatype": "FP64", "shape": list(x.shape), "data": x.ravel().tolist()}
            ]
        }
    )


async def loaded(runtime_cls: type[MLModel], uri: Path, extra: dict[str, Any]) -> Any:
    runtime = runtime_cls(
        ModelSettings(
            name=runtime_cls.__name__,
            implementation=runtime_cls,
            parameters=ModelParameters(uri=str(uri), extra=extra),
        )
    )
    await runtime.load()
    return runtime


def report(label: str, runtime_us: float, bare_us: float) -> None:
    ratio = runtime_us / bare_us
    print(f"{label:<34} runtime {runtime_us:8.1f} us  bare {bare_us:8.1f} us  ratio {ratio:5.2f}", flush=True)


async def compare(
    label: str, runtime: Any, request: InferenceRequest, bare: Callable[[], Any], calls: int
) -> float:
    """Time ``runtime.predict(request)`` and ``bare()``; report both; return the bare time."""
    runtime_us, bare_us = await interleaved_us(partial(runtime.predict, request), bare, calls)
    report(label, runtime_us, bare_us)
    return bare_us


async def run(tmp: Path) -> None:
    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(2000, F))
    estimator = make_pipeline(StandardScaler(), SGDRegressor(random_state=0)).fit(x_ref, x_ref @ np.arange(F))
    joblib.dump(estimator, tmp / "model.joblib")
    model = await loaded(IncrementalModelRuntime, tmp / "model.joblib", {"feature_names": NAMES})
    for n in (1, 100):
        x = rng.normal(size=(n, F))
        label = f"model (SGD pipeline), {n} row(s)"
        await compare(label, model, v2_request(x), partial(estimator.predict, x), CALLS)

    x = rng.normal(size=(10, F))
    bare_outlier: dict[str, float] = {}
    for kind in ("sklearn-iforest", "alibi-iforest", "alibi-mahalanobis"):
        detector = fit_outlier_detector(kind, x_ref)
        runtime = await loaded(OutlierRuntime, save_detector(detector, tmp / f"{kind}.joblib"), {})
        bare_outlier[kind] = await compare(
            f"outlier {kind}, 10 rows", runtime, v2_request(x), partial(detector.score, x), CALLS // 4
        )

    batch = rng.normal(size=(500, F))
    bare_drift: dict[str, float] = {}
    for kind in ("scipy-ks", "alibi-ks"):
        drift = fit_drift_detector(kind, x_ref)
        runtime = await loaded(DriftRuntime, save_detector(drift, tmp / f"{kind}.joblib"), {})
        bare_drift[kind] = await compare(
            f"drift {kind}, 500 rows", runtime, v2_request(batch), partial(drift.predict, batch), CALLS // 20
        )
    print(
        "permissive / alibi (bare call time): "
        f"iforest {bare_outlier['sklearn-iforest'] / bare_outlier['alibi-iforest']:.2f}, "
        f"ks {bare_drift['scipy-ks'] / bare_drift['alibi-ks']:.2f}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-runtimes-") as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
