"""``IncrementalModelRuntime``: serves a scikit-learn estimator (one that can ``partial_fit``) in MLServer.

Request: the feature tensor (``feature_tensor``, FP64 [N, F], columns in ``feature_names`` order); other
tensors are ignored except ``carry_tensors`` (the outlier node's ``outlier_flag``/``outlier_score``),
which are copied unchanged into the response. Response: ``output_name`` [N] plus the carried tensors;
``model_version`` = the registered MLflow version served; ``parameters`` = ``model_version``,
``model_uri``, ``horizon_s``.

- A regressor answers ``output_name`` FP64 [N].
- A classifier (scikit-learn's ``is_classifier`` with ``predict_proba``) answers ``output_name`` = the most
  probable class of each row (INT64 for integer classes, FP64 for other numbers, BYTES for strings),
  ``probabilities_name`` FP64 [N, C], and ``parameters.classes`` = the class list in column order
  (``class_outputs``).

Hot swap: MLServer's repository reload (``POST /v2/repository/models/<m>/load``) builds a new runtime,
awaits its ``load()`` (run in a thread, so the old one keeps serving), then switches. Each runtime holds its
estimator in one immutable ``ServedModel`` attribute that ``predict`` reads once and ``unload`` never
clears, so requests already inside the old runtime finish on the old model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import status
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.logging import logger  # configured by MLServer (format, level, model context)
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput
from sklearn.base import is_classifier

from driftloop_servers.artifacts import ArtifactRef, artifact_uri, load_estimator, load_off_loop
from driftloop_servers.class_outputs import ClassLabels
from driftloop_servers.errors import ArtifactError, InvalidTensor
from driftloop_servers.metrics import count_rows
from driftloop_servers.settings import ModelRuntimeSettings
from driftloop_servers.tensors import (
    check_batch_size,
    check_requested_outputs,
    decode_matrix,
    describe_nonfinite,
    describe_tensors,
    find_input,
    fp64_output,
    nonfinite_rows,
    optional_input,
    passthrough,
    requested_outputs,
)


@dataclass(frozen=True)
class ServedModel:
    """One loaded estimator and where it came from; replaced as a whole, never mutated."""

    estimator: Any
    ref: ArtifactRef
    feature_frame_columns: list[str] | None  # set when the estimator was fitted on a DataFrame
    classes: ClassLabels | None = None  # set when the estimator is a classifier


class IncrementalModelRuntime(MLModel):
    """MLServer runtime for driftloop's incremental forecaster (see the module docstring)."""

    async def load(self) -> bool:
        self.runtime_settings = ModelRuntimeSettings.from_model_settings(self.settings)
        self._served = await load_off_loop(self._load_served)
        ref = self._served.ref
        logger.info(
            "model %r serves %s%s (%s)",
            self.name,
            ref.uri,
            f" = version {ref.version}" if ref.version else "",
            type(self._served.estimator).__name__,
        )
        s = self.runtime_settings
        classes = self._served.classes
        outputs = [(s.output_name, "FP64", [-1])]
        if classes is not None:
            outputs = [
                (s.output_name, classes.datatype, [-1]),
                (s.probabilities_name, "FP64", [-1, len(classes.values)]),
            ]
        describe_tensors(
            self, inputs=[(s.feature_tensor, "FP64", [-1, len(s.feature_names)])], outputs=outputs
        )
        return True

    def _load_served(self) -> ServedModel:
        s = self.runtime_settings
        uri = artifact_uri(s.model_uri, self.settings, "model_uri")
        estimator, ref = load_estimator(uri, self.settings, s.resolved_tracking_uri())
        if not callable(getattr(estimator, "predict", None)):
            raise ArtifactError(f"{uri!r} holds a {type(estimator).__name__}, which has no predict()")
        n_in = getattr(estimator, "n_features_in_", None)
        if n_in is not None and int(n_in) != len(s.feature_names):
            raise ArtifactError(
                f"{uri!r} was fitted on {n_in} features but feature_names lists {len(s.feature_names)}; "
                "make feature_names match the training columns"
            )
        columns = getattr(estimator, "feature_names_in_", None)
        frame_columns = [str(c) for c in columns] if columns is not None else None
        if frame_columns is not None and frame_columns != list(s.feature_names):
            raise ArtifactError(
                f"{uri!r} was fitted on columns {frame_columns} but feature_names is {s.feature_names}; "
                "list the same names in the same order"
            )
        return ServedModel(estimator, ref, frame_columns, classes=self._classes(uri, estimator))

    @staticmethod
    def _classes(uri: str, estimator: Any) -> ClassLabels | None:
        if not is_classifier(estimator):
            return None
        if not callable(getattr(estimator, "predict_proba", None)):
            raise ArtifactError(
                f"{uri!r} holds a classifier without predict_proba ({type(estimator).__name__}); driftloop "
                "serves class probabilities: train it with a probabilistic loss (e.g. log_loss)"
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise ArtifactError(f"{uri!r} holds a classifier without classes_: is it fitted?")
        return ClassLabels.of(np.asarray(classes))

    @property
    def served(self) -> ServedModel:
        return self._served

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        served = self._served  # read once: a concurrent reload swaps runtimes, never this object
        s = self.runtime_settings
        features = find_input(payload, s.feature_tensor)
        try:
            x = self._features(features_tensor=features)
            carried = self._carried(payload, n_rows=x.shape[0])
            answers = [s.output_name] if served.classes is None else [s.output_name, s.probabilities_name]
            check_requested_outputs(payload, [*answers, *(c.name for c in carried)])
            outputs = self._answer(served, x)
        except InvalidTensor:
            count_rows(self.name, "rejected", features.shape[0] if features.shape else 0)
            raise
        count_rows(self.name, "served", x.shape[0])
        version = served.ref.version or self.version
        parameters = Parameters(model_version=version, model_uri=served.ref.uri, horizon_s=s.horizon_s)
        if served.classes is not None:
            parameters = Parameters(**parameters.model_dump(), classes=served.classes.values)
        return InferenceResponse(
            model_name=self.name,
            model_version=version,
            parameters=parameters,
            outputs=requested_outputs(payload, [*outputs, *carried]),
        )

    def _answer(self, served: ServedModel, x: np.ndarray) -> list[ResponseOutput]:
        s = self.runtime_settings
        if served.classes is None:
            return [fp64_output(s.output_name, self._predict(served, x, "predict"))]
        probabilities = self._predict(served, x, "predict_proba")
        return [
            served.classes.output(s.output_name, probabilities),
            fp64_output(s.probabilities_name, probabilities),
        ]

    def _features(self, features_tensor: Any) -> np.ndarray:
        s = self.runtime_settings
        x = decode_matrix(features_tensor, len(s.feature_names))
        bad = nonfinite_rows(x)
        if bad.any():
            if s.nonfinite_policy == "reject":
                raise InvalidTensor(describe_nonfinite(features_tensor.name, x, s.feature_names))
            if s.nonfinite_policy == "impute":
                fill = np.asarray(s.impute_values, dtype=np.float64)
                x = np.where(np.isfinite(x), x, fill)
                count_rows(self.name, "imputed", int(bad.sum()))
        return x

    def _carried(self, payload: InferenceRequest, n_rows: int) -> list[ResponseOutput]:
        outputs = []
        for name in self.runtime_settings.carry_tensors:
            tensor = optional_input(payload, name)
            if tensor is not None:
                check_batch_size(tensor, n_rows)
                outputs.append(passthrough(tensor))
        return outputs

    def _predict(self, served: ServedModel, x: np.ndarray, method: str) -> np.ndarray:
        """``estimator.<method>(x)`` as float64; its ValueError is a 422, anything else a 500."""
        rows: Any = x
        if served.feature_frame_columns is not None:
            import pandas as pd

            rows = pd.DataFrame(x, columns=served.feature_frame_columns)
        try:
            return np.asarray(getattr(served.estimator, method)(rows), dtype=np.float64)
        except ValueError as exc:
            raise InvalidTensor(
                f"the estimator refused input tensor {self.runtime_settings.feature_tensor!r}: {exc}",
                status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        except Exception as exc:
            raise MLServerError(
                f"model {self.name!r} failed to predict: {type(exc).__name__}: {exc}",
                status.HTTP_500_INTERNAL_SERVER_ERROR,
            ) from None
