"""A cut candidate and its registration: one MLflow run and one registered version, alias challenger.

The run holds params (the estimator and its hyper-parameters, the policy, the data window), metrics
(both models' prequential error on the window), the model (pickle, explicit signature and pip
requirements: registering stays fast) and tags; the version carries the same ``driftloop.*`` tags, so
the parent version and the trigger are on both. Registering is idempotent: each candidate has an id
(tag ``driftloop.candidate_id``), and a candidate already registered (a crash after registering, before
the next checkpoint) is found instead of registered twice. Each candidate's drift reference (its
window's most recent rows) is logged with ``driftloop.references.log_reference``. The trainer never
moves ``champion``.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from driftloop.learning.registration import model_pip_requirements
from driftloop.references import log_reference
from driftloop.registry import MlflowRegistry, ModelVersionRef

log = logging.getLogger(__name__)

CANDIDATE_ID_TAG = "driftloop.candidate_id"


class CandidateRegistry(Protocol):
    """What the trainer needs of the registry (``driftloop.registry.MlflowRegistry`` has it)."""

    def register_sklearn_model(
        self,
        name: str,
        model: Any,
        *,
        input_example: np.ndarray,
        pip_requirements: list[str],
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        alias: str | None = None,
        version_tags: dict[str, str] | None = None,
        run_name: str | None = None,
    ) -> ModelVersionRef: ...

    def find_version_by_tag(self, name: str, key: str, value: str) -> ModelVersionRef | None: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def log_run_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None: ...


@dataclass
class Candidate:
    candidate_id: str
    trigger: str
    parent_version: int
    cut_at: float
    model_pickle: bytes
    params: dict[str, Any]
    metrics: dict[str, float]
    reference: np.ndarray
    feature_names: list[str]
    attempts: int = 0
    last_error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def model(self) -> Any:
        return pickle.loads(self.model_pickle)


def estimator_params(model: Any) -> dict[str, Any]:
    cls = type(model)
    params: dict[str, Any] = {"estimator": f"{cls.__module__}.{cls.__qualname__}"}
    for key, value in model.get_params(deep=False).items():
        params[f"estimator.{key}"] = value
    return params


class CandidateRegistrar:
    def __init__(self, registry: CandidateRegistry, model_name: str, alias: str) -> None:
        self.registry = registry
        self.model_name = model_name
        self.alias = alias

    def register(self, candidate: Candidate) -> ModelVersionRef:
        """Register (or find, if it was registered before a crash) and point ``alias`` at it."""
        ref = self.registry.find_version_by_tag(self.model_name, CANDIDATE_ID_TAG, candidate.candidate_id)
        if ref is None:
            ref = self._register_new(candidate)
        # the drift reference first (it travels with the version: the drift monitor watches a promoted
        # candidate against it), the alias last: a challenger always has its reference
        if ref.run_id is not None:
            # log_reference uses only ``log_run_artifacts`` of the registry
            log_reference(
                cast(MlflowRegistry, self.registry), ref.run_id, candidate.reference, candidate.feature_names
            )
        self.registry.set_alias(self.model_name, self.alias, ref.version)
        return ref

    def _register_new(self, candidate: Candidate) -> ModelVersionRef:
        model = candidate.model()
        tags = {
            "driftloop.kind": "candidate",
            "driftloop.parent_version": str(candidate.parent_version),
            "driftloop.trigger": candidate.trigger,
            CANDIDATE_ID_TAG: candidate.candidate_id,
            "driftloop.feature_names": ",".join(candidate.feature_names),
            **candidate.tags,
        }
        return self.registry.register_sklearn_model(
            self.model_name,
            model,
            input_example=candidate.reference[:5],
            pip_requirements=model_pip_requirements(),
            params=candidate.params,
            metrics=candidate.metrics,
            tags=tags,
            version_tags=tags,
            alias=None,
            run_name=f"{self.model_name}-candidate-{candidate.trigger}",
        )
