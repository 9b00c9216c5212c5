"""``OutlierRuntime``: a Seldon TRANSFORMER node that annotates rows with an outlier flag and score.

It returns every input tensor unchanged (name, datatype, shape, parameters, data) plus ``outlier_flag``
(BOOL [N]) and ``outlier_score`` (FP64 [N]): Seldon's executor renames this response's ``outputs`` to
``inputs`` and sends it, with every other key kept, to the next node (the model), which carries the two
annotations into its own response.

It counts the rows it scored and flagged per predictor on MLServer's metrics endpoint
(``driftloop_outlier_scored_rows_total`` / ``driftloop_outlier_flagged_rows_total``, ``metrics``): the
figures of the rollout's outlier-rate gate on a cluster.
"""

from __future__ import annotations

import numpy as np
from fastapi import status
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, Parameters

from driftloop_servers.artifacts import ArtifactRef, load_off_loop
from driftloop_servers.detector_loading import load_runtime_detector
from driftloop_servers.detectors import OutlierDetector
from driftloop_servers.errors import ArtifactError, DetectorError, InvalidTensor
from driftloop_servers.metrics import PredictorIdentity, count_rows, outlier_row_counters
from driftloop_servers.settings import OutlierRuntimeSettings
from driftloop_servers.tensors import (
    bool_output,
    decode_matrix,
    describe_nonfinite,
    describe_tensors,
    find_input,
    fp64_output,
    nonfinite_rows,
    passthrough,
)


class OutlierRuntime(MLModel):
    """MLServer runtime around an ``OutlierDetector`` (see the module docstring)."""

    async def load(self) -> bool:
        self.runtime_settings = OutlierRuntimeSettings.from_model_settings(self.settings)
        s = self.runtime_settings
        detector, ref = await load_off_loop(
            load_runtime_detector, s.detector_uri, self.settings, s.resolved_tracking_uri()
        )
        if not isinstance(detector, OutlierDetector):
            raise ArtifactError(
                f"{ref.uri!r} holds a {detector.kind} drift detector; expected an outlier detector"
            )
        if s.n_features is not None and s.n_features != detector.n_features:
            raise ArtifactError(
                f"{ref.uri!r} was fitted on {detector.n_features} features but feature_names lists "
                f"{s.n_features}; make them match"
            )
        self._detector: OutlierDetector = detector
        self._ref: ArtifactRef = ref
        self._scored_rows, self._flagged_rows = outlier_row_counters(
            self.name, PredictorIdentity.from_environment()
        )
        features = (s.feature_tensor, "FP64", [-1, detector.n_features])
        describe_tensors(
            self,
            inputs=[features],
            outputs=[features, (s.flag_output, "BOOL", [-1]), (s.score_output, "FP64", [-1])],
        )
        return True

    @property
    def detector(self) -> OutlierDetector:
        return self._detector

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        detector, s = self._detector, self.runtime_settings
        features = find_input(payload, s.feature_tensor)
        try:
            x = decode_matrix(features, detector.n_features)
            bad = nonfinite_rows(x)
            if bad.any() and s.nonfinite_policy == "reject":
                raise InvalidTensor(describe_nonfinite(features.name, x, s.feature_names))
            scores, flags = self._score(detector, x, bad)
        except InvalidTensor:
            count_rows(self.name, "rejected", features.shape[0] if features.shape else 0)
            raise
        count_rows(self.name, "served", x.shape[0])
        count_rows(self.name, "flagged", int(flags.sum()))
        self._scored_rows.inc(x.shape[0])
        self._flagged_rows.inc(int(flags.sum()))
        passed = [passthrough(t) for t in payload.inputs if t.name not in (s.flag_output, s.score_output)]
        return InferenceResponse(
            model_name=self.name,
            model_version=self._ref.version or self.version,
            parameters=Parameters(
                detector_kind=detector.kind, outlier_threshold=detector.threshold, detector_uri=self._ref.uri
            ),
            outputs=[*passed, bool_output(s.flag_output, flags), fp64_output(s.score_output, scores)],
        )

    def _score(
        self, detector: OutlierDetector, x: np.ndarray, bad: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full(x.shape[0], np.nan)
        flags = bad.copy()
        good = ~bad
        if good.any():
            try:
                result = detector.score(x[good])
            except DetectorError as exc:
                raise InvalidTensor(
                    f"input tensor {self.runtime_settings.feature_tensor!r}: {exc}",
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                ) from None
            scores[good] = result.scores
            flags[good] = result.flags
        return scores, flags
