"""Typed settings of the three runtimes, built from ``parameters.extra`` of a model-settings.json.

Each runtime has its own env prefix (``DRIFTLOOP_MODEL_``, ``DRIFTLOOP_OUTLIER_``, ``DRIFTLOOP_DRIFT_``):
a value in ``parameters.extra`` wins over the environment, the environment over the default. Unknown keys in
``parameters.extra`` are refused with a message naming the key and the known ones.

Example::

    >>> s = ModelRuntimeSettings.from_extra({"model_uri": "models:/m@champion", "feature_names": ["a", "b"]})
    >>> s.n_features, s.feature_tensor, s.nonfinite_policy
    (2, 'features', 'reject')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from mlserver.settings import ModelSettings
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.settings import StateSettings
from driftloop_servers.errors import RuntimeSettingsError


class RuntimeSettings(BaseSettings):
    """Common behaviour: construction from model settings with readable errors."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)
    runtime_name: ClassVar[str] = "runtime"

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking/registry URI for models:/ URIs; default: driftloop's state "
        "(DRIFTLOOP_MLFLOW_TRACKING_URI or sqlite under DRIFTLOOP_HOME)",
    )
    feature_tensor: str = Field(default="features", description="name of the [N, F] input tensor")
    feature_names: list[str] | None = Field(
        default=None, description="feature order of the columns of the feature tensor; F = its length"
    )

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any] | None) -> Self:
        values = dict(extra or {})
        known = sorted(cls.model_fields)
        unknown = sorted(key for key in values if key not in cls.model_fields)
        if unknown:
            raise RuntimeSettingsError(
                f"{cls.runtime_name}: unknown key(s) {', '.join(map(repr, unknown))} in parameters.extra; "
                f"known keys are {', '.join(known)}"
            )
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(settings)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise RuntimeSettingsError(
                f"{cls.runtime_name}: invalid parameters.extra ({problems}); fix the model-settings.json "
                f"or the {cls.model_config.get('env_prefix', '')}* environment variables"
            ) from None

    @classmethod
    def from_model_settings(cls, model_settings: ModelSettings) -> Self:
        extra = model_settings.parameters.extra if model_settings.parameters else None
        return cls.from_extra(extra)

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or StateSettings().tracking_uri()

    @property
    def n_features(self) -> int | None:
        return len(self.feature_names) if self.feature_names is not None else None

    @model_validator(mode="after")
    def _feature_names_unique(self) -> Self:
        names = self.feature_names
        if names is not None:
            if not names:
                raise ValueError("feature_names must list at least one feature")
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"feature_names has duplicates: {duplicates}")
        return self


class ModelRuntimeSettings(RuntimeSettings):
    """Settings of ``IncrementalModelRuntime`` (env prefix ``DRIFTLOOP_MODEL_``)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_MODEL_", extra="forbid", frozen=True)
    runtime_name: ClassVar[str] = "IncrementalModelRuntime"

    model_uri: str | None = Field(
        default=None,
        description="models:/<name>@<alias>, models:/<name>/<version>, or a local joblib/pickle file or "
        "MLflow model directory (relative to the model-settings folder); parameters.uri wins when set",
    )
    feature_names: list[str] = Field(description="feature order of the feature tensor's columns (F)")
    nonfinite_policy: Literal["reject", "impute", "passthrough"] = Field(
        default="reject",
        description="NaN/inf/null in features: reject (400), impute (impute_values per feature), "
        "passthrough (the estimator handles them)",
    )
    impute_values: list[float] | None = Field(
        default=None, description="one value per feature, used when nonfinite_policy=impute"
    )
    output_name: str = Field(
        default="prediction", description="name of the prediction output (a classifier's: the class label)"
    )
    probabilities_name: str = Field(
        default="probabilities", description="name of a classifier's FP64 [N, C] class-probability output"
    )
    carry_tensors: list[str] = Field(
        default=["outlier_flag", "outlier_score"],
        description="input tensors copied unchanged into the response when present",
    )
    horizon_s: float | None = Field(default=None, description="forecast horizon, echoed in parameters")
    online_learning: bool = Field(
        default=False,
        description="POST /v2/models/<m>/learn makes the served estimator partial_fit labelled rows in "
        "place; needs an estimator with partial_fit and MLSERVER_PARALLEL_WORKERS=0",
    )

    @model_validator(mode="after")
    def _impute_values_match(self) -> Self:
        n = len(self.feature_names)
        if self.nonfinite_policy == "impute" and (self.impute_values is None or len(self.impute_values) != n):
            raise ValueError(
                f"nonfinite_policy=impute needs impute_values with {n} values (one per feature_names entry)"
            )
        if self.output_name == self.probabilities_name:
            raise ValueError(
                f"output_name and probabilities_name are both {self.output_name!r}; give them different names"
            )
        return self


class OutlierRuntimeSettings(RuntimeSettings):
    """Settings of ``OutlierRuntime`` (env prefix ``DRIFTLOOP_OUTLIER_``)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_OUTLIER_", extra="forbid", frozen=True)
    runtime_name: ClassVar[str] = "OutlierRuntime"

    detector_uri: str | None = Field(
        default=None,
        description="a joblib file from save_detector (relative to the model-settings folder allowed) or "
        "models:/<name>@<alias> whose artifact folder holds detector.joblib; parameters.uri wins when set",
    )
    nonfinite_policy: Literal["reject", "flag"] = Field(
        default="reject",
        description="NaN/inf/null in features: reject (400) or flag the row as an outlier (score null)",
    )
    flag_output: str = Field(default="outlier_flag", description="name of the BOOL [N] output")
    score_output: str = Field(default="outlier_score", description="name of the FP64 [N] output")


class DriftRuntimeSettings(RuntimeSettings):
    """Settings of ``DriftRuntime`` (env prefix ``DRIFTLOOP_DRIFT_``)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_DRIFT_", extra="forbid", frozen=True)
    runtime_name: ClassVar[str] = "DriftRuntime"

    detector_uri: str | None = Field(
        default=None,
        description="a joblib file from save_detector or models:/<name>@<alias> whose artifact folder "
        "holds detector.joblib; parameters.uri wins when set",
    )
    nonfinite_policy: Literal["reject", "drop"] = Field(
        default="reject", description="rows with NaN/inf/null: reject (400) or drop them (counted)"
    )
