"""The candidates the trainer registered, read from the registry's version tags.

A candidate is a version tagged ``driftloop.kind=candidate`` (``learn.candidates``); the validator tags
its verdict (``driftloop.validation.verdict``), the rollout controller its status and reason
(``driftloop.rollout.status`` / ``.reason``). ``CandidateSource`` is the port (one call: every version of
a model with its tags); ``MlflowCandidateSource`` is its MLflow adapter (``MlflowClient`` public API).
"""

from __future__ import annotations

from typing import Protocol

from driftloop_feedback.learn.candidates import CANDIDATE_ID_TAG
from driftloop_feedback.report.records import CandidateVersion
from driftloop_feedback.rollout.controller import STATUS_TAG, TAG, VERDICT_TAG

KIND_TAG = "driftloop.kind"
PARENT_TAG = "driftloop.parent_version"
TRIGGER_TAG = "driftloop.trigger"
REASON_TAG = TAG + "reason"


class CandidateSource(Protocol):
    def model_versions(self, name: str) -> list[tuple[int, dict[str, str]]]:
        """Every version of the registered model ``name`` with its tags (none if the model is absent)."""
        ...


class MlflowCandidateSource:
    """The versions of an MLflow registry (``tracking_uri`` as for ``driftloop.registry.MlflowRegistry``)."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def model_versions(self, name: str) -> list[tuple[int, dict[str, str]]]:
        if "'" in name:
            raise ValueError(f"model name {name!r} cannot be searched: quotes are not allowed")
        found = self._client.search_model_versions(f"name='{name}'")
        return [(int(v.version), {str(k): str(t) for k, t in (v.tags or {}).items()}) for v in found]


def candidate_of(version: int, tags: dict[str, str]) -> CandidateVersion | None:
    """The candidate a version is, or None for a version the trainer did not register (e.g. version 1)."""
    if tags.get(KIND_TAG) != "candidate":
        return None
    parent = tags.get(PARENT_TAG)
    return CandidateVersion(
        version=version,
        parent_version=int(parent) if parent is not None and parent.isdigit() else None,
        trigger=tags.get(TRIGGER_TAG, ""),
        candidate_id=tags.get(CANDIDATE_ID_TAG, ""),
        validation=tags.get(VERDICT_TAG),
        rollout=tags.get(STATUS_TAG),
        reason=tags.get(REASON_TAG, ""),
    )


def read_candidates(source: CandidateSource, model_name: str) -> list[CandidateVersion]:
    """The registered candidates of ``model_name``, oldest version first."""
    found = (candidate_of(v, tags) for v, tags in source.model_versions(model_name))
    return sorted((c for c in found if c is not None), key=lambda c: c.version)
