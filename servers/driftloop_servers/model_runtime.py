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

Online learning (off by default; ``online_learning: true`` in ``parameters.extra``): ``POST
/v2/models/<m>/learn`` takes the same feature tensor plus ``truth`` [N] and makes the served estimator
``partial_fit`` those rows in place, synchronously on the event loop (so no ``predict`` sees a half-learned
model), and answers ``{"model_name", "model_version", "learned", "samples_seen"}`` (``online_learning``).

Hot swap: MLServer's repository reload (``POST /v2/repository/models/<m>/load``) builds a new runtime,
awaits its ``load()`` (run in a thread, so the old one keeps serving), then switches. Each runtime holds its
estimator in one ``ServedModel`` attribute that ``predict`` reads once and ``unload`` never clears, so
requests already inside the old runtime finish on the old model. The new runtime serves the artifact it
loaded: rows learned online by the old runtime since its load are not carried over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Depends, status
from mlserver import MLModel
from mlserver.errors import MLServerError
from mlserver.handlers import custom_handler
from mlserver.logging import logger  # configured by MLServer (format, level, model context)
from mlserver.types import InferenceRequest, InferenceResponse, Parameters, ResponseOutput
from sklearn.base import is_classifier

from driftloop_servers.artifacts import ArtifactRef, artifact_uri, load_estimator, load_off_loop
from driftloop_servers.class_outputs import ClassLabels
from driftloop_servers.errors import ArtifactError, InvalidTensor, RuntimeSettingsError
from driftloop_servers.metrics import count_learn_refused, count_learned, count_rows
from driftloop_servers.online_learning import (
    HOW_TO_ENABLE,
    LEARN_PATH,
    LOADED,
    LearnRefused,
    decode_truth,
    in_parallel_worker,
    parse_body,
    request_body,
    truth_as_classes,
)
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
    """One loaded estimator and where it came from. The fields are never reassigned (a reload builds a new
    runtime with a new ``ServedModel``), but with online learning the estimator itself learns in place."""

    estimator: Any
    ref: ArtifactRef
    feature_frame_columns: list[str] | None  # set when the estimator was fitted on a DataFrame
    classes: ClassLabels | None = None  # set when the estimator is a classifier


class IncrementalModelRuntime(MLModel):
    """MLServer runtime for driftloop's incremental forecaster (see the module docstring)."""

    async def load(self) -> bool:
        self.runtime_settings = ModelRuntimeSettings.from_model_settings(self.settings)
        self._learned_online = 0
        if self.runtime_settings.online_learning and in_parallel_worker():
            raise RuntimeSettingsError(
                f"model {self.name!r}: online_learning needs MLSERVER_PARALLEL_WORKERS=0 (parallel_workers 0 "
                "in settings.json): each parallel worker holds its own copy of the model, so a learned row "
                "would change one copy only; set parallel_workers to 0 or turn online_learning off"
            )
        self._served = await load_off_loop(self._load_served)
        if self.runtime_settings.online_learning:
            self._check_learnable(self._served)
            count_learned(self.name, 0)  # the series exists from load
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
        LOADED.register(self)
        return True

    async def unload(self) -> bool:
        LOADED.unregister(self)
        return await super().unload()

    def _check_learnable(self, served: ServedModel) -> None:
        name = type(served.estimator).__name__
        if not callable(getattr(served.estimator, "partial_fit", None)):
            raise ArtifactError(
                f"model {self.name!r}: online_learning needs an estimator with partial_fit; "
                f"{served.ref.uri!r} holds a {name} (a Pipeline has none: serve a model of "
                "driftloop_servers.estimators)"
            )
        if served.classes is not None and served.classes.datatype == "BYTES":
            raise ArtifactError(
                f"model {self.name!r}: online_learning takes numeric truth, but the classifier's classes are "
                f"strings {served.classes.values[:10]}; train it on numeric class labels"
            )

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

    @custom_handler(rest_path=LEARN_PATH, rest_method="POST")
    async def learn(self, model_name: str, body: bytes = Depends(request_body)) -> dict:
        """``POST /v2/models/{model_name}/learn``. MLServer adds this route once per loaded model with the
        same path, so the first one answers for all: the call goes to the runtime serving ``model_name``.

        The annotations are builtins and the body comes from a dependency: with parallel workers MLServer
        wraps this method, FastAPI resolves its annotations in MLServer's module and the arguments are
        pickled to a worker (where ``load`` refuses online learning, and a call gets the 409/404). It is
        ``async`` on purpose: FastAPI would run a plain ``def`` in a thread, next to ``predict``."""
        name = model_name
        target = LOADED.get(name)  # the body is read: the runtime serving that name now
        if target is None:
            count_learn_refused(self.name, "unknown_model")
            raise LearnRefused(
                f"no model {name!r} with a learn route is loaded in this server; the learn route here "
                f"serves {LOADED.names()}",
                "unknown_model",
                status.HTTP_404_NOT_FOUND,
            )
        return target.learn_rows(body)

    def learn_rows(self, body: bytes) -> dict[str, Any]:
        """Learn the rows of one learn call's body, synchronously (nothing else runs on the event loop
        meanwhile); refusals are counted by reason and raised as 4xx ``LearnRefused``."""
        try:
            return self._learn_rows(body)
        except LearnRefused as exc:
            count_learn_refused(self.name, exc.reason)
            raise

    def _learn_rows(self, body: bytes) -> dict[str, Any]:
        s = self.runtime_settings
        if not s.online_learning:
            raise LearnRefused(
                f"online learning is off for model {self.name!r}; to turn it on, {HOW_TO_ENABLE}",
                "disabled",
                status.HTTP_409_CONFLICT,
            )
        payload = parse_body(body)
        served = self._served
        x = self._learn_features(payload)
        truth = decode_truth(payload, n_rows=x.shape[0])
        y: np.ndarray = truth
        if served.classes is not None:
            y = truth_as_classes(truth, served.estimator.classes_, served.classes.values)
        self._partial_fit(served, x, y)
        n = int(x.shape[0])
        self._learned_online += n
        count_learned(self.name, n)
        return {
            "model_name": self.name,
            "model_version": served.ref.version or self.version,
            "learned": n,
            "samples_seen": self._learned_online,
        }

    def _learn_features(self, payload: InferenceRequest) -> np.ndarray:
        """The feature tensor decoded and checked as ``predict`` does, except that non-finite values are
        always refused (learning imputed values would teach the model the fill values)."""
        s = self.runtime_settings
        try:
            x = decode_matrix(find_input(payload, s.feature_tensor), len(s.feature_names))
            self._carried(payload, n_rows=x.shape[0])
        except InvalidTensor as exc:
            raise LearnRefused(str(exc), "features", exc.status_code) from None
        rows, cols = np.nonzero(~np.isfinite(x))
        if rows.size:
            raise LearnRefused(
                f"input tensor {s.feature_tensor!r} holds {rows.size} NaN/inf/null value(s), first at row "
                f"{int(rows[0])} ({s.feature_names[int(cols[0])]}); online learning takes finite rows only "
                "(nonfinite_policy applies to inference)",
                "features_nonfinite",
            )
        return x

    def _partial_fit(self, served: ServedModel, x: np.ndarray, y: np.ndarray) -> None:
        """``estimator.partial_fit(x, y)`` in place; its ValueError is a 422, anything else a 500."""
        try:
            served.estimator.partial_fit(self._rows(served, x), y)
        except ValueError as exc:
            raise LearnRefused(
                f"the estimator refused to learn these rows: {exc}",
                "estimator",
                status.HTTP_422_UNPROCESSABLE_ENTITY,
            ) from None
        except Exception as exc:
            raise MLServerError(
                f"model {self.name!r} failed to learn: {type(exc).__name__}: {exc}",
                status.HTTP_500_INTERNAL_SERVER_ERROR,
            ) from None

    @staticmethod
    def _rows(served: ServedModel, x: np.ndarray) -> Any:
        """``x`` as the estimator was fitted: a DataFrame with its columns when it was fitted on one."""
        if served.feature_frame_columns is None:
            return x
        import pandas as pd

        return pd.DataFrame(x, columns=served.feature_frame_columns)

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
        try:
            return np.asarray(getattr(served.estimator, method)(self._rows(served, x)), dtype=np.float64)
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
