"""The cluster keeps the workers' state in the compacted state topic (issue 16 item 4): the loop's
ConfigMap selects the log store, the joiner, monitor and trainer get it, and the topic it names is a
compacted KafkaTopic."""

from __future__ import annotations

from typing import Any

import pytest

from driftloop.settings import StateSettings
from tests.kube.test_kustomize_manifests import MANIFESTS, OVERLAYS, config_env, containers, of_kind, render


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(MANIFESTS / "overlays" / request.param)


def test_the_stateful_workers_use_the_log_store_on_a_compacted_topic(docs: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    topics = set()
    for name in ("joiner", "monitor", "trainer"):
        (container,) = containers(deployments[name])
        env = config_env(docs, container, deployments[name]["metadata"]["namespace"])
        settings = StateSettings.model_validate(
            {
                k.removeprefix("DRIFTLOOP_").lower(): v
                for k, v in env.items()
                if k.startswith("DRIFTLOOP_STATE_")
            }
        )
        assert settings.state_store == "log", name
        topics.add(settings.state_topic)
    assert topics == {StateSettings.model_fields["state_topic"].default}
    (topic,) = [t for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] in topics]
    assert topic["spec"]["config"]["cleanup.policy"] == "compact"
    assert "retention.ms" not in topic["spec"]["config"]
    assert "driftloop.io/partitioning" not in topic["metadata"]["labels"]  # not one of the joiner's inputs
