"""MlflowCandidateSource on a real MLflow sqlite store: the versions' tags as the trainer, validator and
rollout controller set them."""

from __future__ import annotations

from pathlib import Path

import pytest
from driftloop_feedback.report import MlflowCandidateSource, read_candidates

pytestmark = pytest.mark.integration


def test_candidates_read_from_a_real_registry(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("pump")
    client.create_model_version("pump", source=str(tmp_path / "v1"))
    client.create_model_version(
        "pump",
        source=str(tmp_path / "v2"),
        tags={"driftloop.kind": "candidate", "driftloop.parent_version": "1", "driftloop.trigger": "drift"},
    )
    client.set_model_version_tag("pump", "2", "driftloop.rollout.status", "promoted")
    found = read_candidates(MlflowCandidateSource(uri), "pump")
    assert [(c.version, c.parent_version, c.trigger, c.rollout) for c in found] == [
        (2, 1, "drift", "promoted")
    ]
    assert read_candidates(MlflowCandidateSource(uri), "absent") == []
