"""``DriftRuntime``: a drift detector callable as a V2 model on a batch.

Request: the feature tensor FP64 [N, F]. Response: ``is_drift`` (BOOL [1]), ``p_values`` (FP64 [F]),
``distances`` (FP64 [F]), ``threshold`` (FP64 [1]); ``parameters`` say what the threshold applies to
(``threshold_on``: ``p_value`` or ``distance``), the detector kind and the rows tested/dropped.

Batch detectors (``alibi-ks``, ``alibi-cvm``, ``scipy-ks``, ``scipy-cvm``) are stateless. The online
detector (``alibi-cvm-online``) consumes rows in order and keeps its windows in this process: a restart,
a reload or a second worker starts from an empty window (its p-values are null; it reports statistics).

Tests run in a worker thread, one at a time and in arrival order (an ``asyncio.Lock``), so a large batch
does not stall other models served by the same MLServer process and the online detector sees rows in order.
"""

from __future__ import annotations

import asyncio

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, Parameters

from driftloop_servers.artifacts import ArtifactRef, load_off_loop
from driftloop_servers.detector_loading import load_runtime_detector
from driftloop_servers.detectors import DriftDetector, DriftResult
from driftloop_servers.errors import ArtifactError, InvalidTensor
from driftloop_servers.metrics import count_rows
from driftloop_servers.settings import DriftRuntimeSettings
from driftloop_servers.tensors import (
    bool_output,
    check_requested_outputs,
    decode_matrix,
    describe_nonfinite,
    describe_tensors,
    find_input,
    fp64_output,
    nonfinite_rows,
    requested_outputs,
)

DRIFT_OUTPUTS = ("is_drift", "p_values", "distances", "threshold")


class DriftRuntime(MLModel):
    """MLServer runtime around a ``DriftDetector`` (see the module docstring)."""

    async def load(self) -> bool:
        self.runtime_settings = DriftRuntimeSettings.from_model_settings(self.settings)
        s = self.runtime_settings
        detector, ref = await load_off_loop(
            load_runtime_detector, s.detector_uri, self.settings, s.resolved_tracking_uri()
        )
        if not isinstance(detector, DriftDetector):
            raise ArtifactError(f"{ref.uri!r} holds a {detector.kind} outlier detector; expected a drift one")
        if s.n_features is not None and s.n_features != detector.n_features:
            raise ArtifactError(
                f"{ref.uri!r} was fitted on {detector.n_features} features but feature_names lists "
                f"{s.n_features}; make them match"
            )
        self._detector: DriftDetector = detector
        self._ref: ArtifactRef = ref
        self._lock = asyncio.Lock()
        f = detector.n_features
        describe_tensors(
            self,
            inputs=[(s.feature_tensor, "FP64", [-1, f])],
            outputs=[
                ("is_drift", "BOOL", [1]),
                ("p_values", "FP64", [f]),
                ("distances", "FP64", [f]),
                ("threshold", "FP64", [1]),
            ],
        )
        return True

    @property
    def detector(self) -> DriftDetector:
        return self._detector

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        detector, s = self._detector, self.runtime_settings
        features = find_input(payload, s.feature_tensor)
        try:
            x = decode_matrix(features, detector.n_features)
            bad = nonfinite_rows(x)
            if bad.any():
                if s.nonfinite_policy == "reject":
                    raise InvalidTensor(describe_nonfinite(features.name, x, s.feature_names))
                x = x[~bad]
                if x.shape[0] == 0:
                    raise InvalidTensor(
                        f"input tensor {features.name!r}: every row holds NaN/inf/null; nothing left to test"
                    )
            check_requested_outputs(payload, DRIFT_OUTPUTS)
        except InvalidTensor:
            count_rows(self.name, "rejected", features.shape[0] if features.shape else 0)
            raise
        count_rows(self.name, "dropped", int(bad.sum()))
        async with self._lock:
            result = await asyncio.to_thread(detector.predict, x)
        count_rows(self.name, "served", x.shape[0])
        response = self._response(detector, result, dropped=int(bad.sum()))
        response.outputs = requested_outputs(payload, response.outputs)
        return response

    def _response(self, detector: DriftDetector, result: DriftResult, dropped: int) -> InferenceResponse:
        return InferenceResponse(
            model_name=self.name,
            model_version=self._ref.version or self.version,
            parameters=Parameters(
                detector_kind=detector.kind,
                threshold_on=result.threshold_on,
                rows_tested=result.n_rows,
                rows_dropped=dropped,
                detector_uri=self._ref.uri,
            ),
            outputs=[
                bool_output("is_drift", np.array([result.is_drift])),
                fp64_output("p_values", result.p_values),
                fp64_output("distances", result.distances),
                fp64_output("threshold", np.array([result.threshold])),
            ],
        )
