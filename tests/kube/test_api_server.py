"""The local API server is a real one: it enforces the CRD schema, stores, patches and watches."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from driftloop.kube.errors import KubeAPIError, KubeError
from driftloop.kube.full_apiserver import FullKubeAPIServer
from driftloop.kube.sdep_client import SeldonDeploymentClient
from tests.kube.sdeps import canary_sdep

pytestmark = pytest.mark.integration


def test_schema_violation_predictors_not_a_list_is_rejected(sdep_client: SeldonDeploymentClient) -> None:
    doc = canary_sdep()
    doc["spec"]["predictors"] = doc["spec"]["predictors"][0]
    # kubectl's Strict field validation decodes first: the predictor's keys are unknown fields of spec.
    with pytest.raises(KubeAPIError) as strict:
        sdep_client.create(doc)
    assert strict.value.status_code == 400
    assert 'unknown field "spec.predictors.graph"' in str(strict.value)
    # The schema check proper names the field and the type it must have.
    with pytest.raises(KubeAPIError) as created:
        sdep_client.create(doc, field_validation="Warn")
    assert (created.value.status_code, created.value.reason) == (422, "Invalid")
    assert [c["field"] for c in created.value.causes] == ["spec.predictors"]
    assert "spec.predictors in body must be of type array" in str(created.value)
    with pytest.raises(KubeAPIError) as applied:
        sdep_client.apply(doc)
    assert ".spec.predictors: expected list, got" in str(applied.value)
    assert sdep_client.list() == []


def test_schema_violation_replicas_string_is_rejected(sdep_client: SeldonDeploymentClient) -> None:
    doc = canary_sdep()
    doc["spec"]["predictors"][1]["replicas"] = "two"
    with pytest.raises(KubeAPIError) as created:
        sdep_client.create(doc)
    assert created.value.status_code == 422
    assert [c["field"] for c in created.value.causes] == ["spec.predictors[1].replicas"]
    assert 'Invalid value: "string": spec.predictors[1].replicas in body must be of type integer' in str(
        created.value
    )
    # Server-side apply fails earlier, building the typed patch, and says so with a 500.
    with pytest.raises(KubeAPIError) as applied:
        sdep_client.apply(doc)
    assert applied.value.status_code == 500
    assert ".spec.predictors[1].replicas: expected numeric (int or float), got string" in str(applied.value)
    assert sdep_client.list() == []


def test_unknown_field_is_refused_under_strict_validation_and_dropped_otherwise(
    sdep_client: SeldonDeploymentClient,
) -> None:
    doc = canary_sdep()
    doc["spec"]["predictors"][1]["trafic"] = 20  # a typo for traffic
    with pytest.raises(KubeAPIError) as created:
        sdep_client.create(doc)
    assert created.value.status_code == 400
    assert 'unknown field "spec.predictors[1].trafic"' in str(created.value)
    stored = sdep_client.create(doc, field_validation="Warn")
    assert "trafic" not in stored["spec"]["predictors"][1]
    assert stored["spec"] == canary_sdep()["spec"]


def test_valid_sdep_is_stored_and_read_back(sdep_client: SeldonDeploymentClient) -> None:
    doc = canary_sdep()
    created = sdep_client.apply(doc)
    assert created["metadata"]["namespace"] == sdep_client.namespace
    assert created["metadata"]["uid"]
    stored = sdep_client.get("pump-bearing-temp")
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    # The whole spec survives, graph children included (the CRD leaves them untyped).
    assert stored["spec"] == doc["spec"]
    assert [item["metadata"]["name"] for item in sdep_client.list()] == ["pump-bearing-temp"]


def test_traffic_patch_is_applied_and_observed_by_a_watch(sdep_client: SeldonDeploymentClient) -> None:
    before = sdep_client.apply(canary_sdep())
    patched = sdep_client.set_traffic("pump-bearing-temp", {"main": 75, "canary": 25})
    assert [p["traffic"] for p in patched["spec"]["predictors"]] == [75, 25]
    assert int(patched["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])

    events = sdep_client.watch(
        "pump-bearing-temp", resource_version=before["metadata"]["resourceVersion"], timeout_s=5
    )
    first = next(events)
    events.close()
    assert first.type == "MODIFIED"
    assert first.resource_version == patched["metadata"]["resourceVersion"]
    assert {p["name"]: p["traffic"] for p in first.object["spec"]["predictors"]} == {"main": 75, "canary": 25}
    # Nothing but traffic changed.
    expected = canary_sdep()["spec"]
    expected["predictors"][0]["traffic"], expected["predictors"][1]["traffic"] = 75, 25
    assert first.object["spec"] == expected


def test_traffic_for_unknown_predictor_is_refused(sdep_client: SeldonDeploymentClient) -> None:
    sdep_client.apply(canary_sdep())
    with pytest.raises(KubeError, match=r"no predictor\(s\) \['blue'\]; it has \['canary', 'main'\]"):
        sdep_client.set_traffic("pump-bearing-temp", {"blue": 100})
    assert [p["traffic"] for p in sdep_client.get("pump-bearing-temp")["spec"]["predictors"]] == [90, 10]


def test_watch_sees_create_and_delete(sdep_client: SeldonDeploymentClient) -> None:
    sdep_client.apply(canary_sdep("first"))
    start = sdep_client.get("first")["metadata"]["resourceVersion"]
    sdep_client.apply(canary_sdep("second"))
    sdep_client.delete("second")
    events = [
        (e.type, e.object["metadata"]["name"]) for e in sdep_client.watch(resource_version=start, timeout_s=1)
    ]
    assert events == [("ADDED", "second"), ("DELETED", "second")]
    with pytest.raises(KubeAPIError) as info:
        sdep_client.get("second")
    assert info.value.status_code == 404


def test_kubectl_reads_what_the_client_wrote(
    kube_api_server: FullKubeAPIServer, sdep_client: SeldonDeploymentClient, kubectl: str
) -> None:
    sdep_client.apply(canary_sdep())
    out = subprocess.run(
        [kubectl, "get", "sdep", "pump-bearing-temp", "-n", sdep_client.namespace, "-o", "json"],
        env=kube_api_server.kubectl_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["spec"] == canary_sdep()["spec"]


def test_kubectl_apply_after_a_traffic_change_conflicts_until_forced(
    kube_api_server: FullKubeAPIServer, kubectl: str, kube_namespace: str, tmp_path: Path
) -> None:
    """`spec.predictors` is an atomic list in the CRD: whoever last changed any traffic owns all of it."""
    manifest = tmp_path / "sdep.yaml"
    manifest.write_text(yaml.safe_dump(canary_sdep()))

    def kubectl_apply(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, "apply", "--server-side", "-n", kube_namespace, "-f", str(manifest), *extra],
            env=kube_api_server.kubectl_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert kubectl_apply().returncode == 0
    connection = kube_api_server.connection()
    with SeldonDeploymentClient(
        connection, namespace=kube_namespace, field_manager="driftloop-rollout"
    ) as rollout:
        rollout.set_traffic("pump-bearing-temp", {"main": 50, "canary": 50})
        refused = kubectl_apply()
        assert refused.returncode == 1
        assert 'conflict with "driftloop-rollout"' in refused.stderr and ".spec.predictors" in refused.stderr
        assert [p["traffic"] for p in rollout.get("pump-bearing-temp")["spec"]["predictors"]] == [50, 50]
        assert kubectl_apply("--force-conflicts").returncode == 0
        assert [p["traffic"] for p in rollout.get("pump-bearing-temp")["spec"]["predictors"]] == [90, 10]


def test_stop_ends_both_processes_and_removes_the_temp_dir() -> None:
    server = FullKubeAPIServer(crds=()).start()
    pids, directory = server.pids, server.dir
    assert len(pids) == 2 and directory is not None and directory.is_dir()
    server.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not Path(directory).exists()


def test_a_process_that_dies_while_starting_is_reported_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_etcd = Path(__file__).parent / "dying_etcd.sh"
    monkeypatch.setenv("DRIFTLOOP_ETCD", str(fake_etcd))
    server = FullKubeAPIServer(crds=())
    with pytest.raises(
        KubeError, match=r"(?s)etcd exited with code 3 while starting; log .*etcd\.log:\n.*disk full"
    ):
        server.start()
    assert server.dir is None and server.pids == []
