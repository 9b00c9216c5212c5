"""The rollout controller's Kubernetes backend and Lease against the full kube-apiserver (RBAC,
service-account tokens, Seldon's CRD): the controller runs with its own ServiceAccount's token, bound to
the Role the manifests ship (rendered by ``kubectl kustomize manifests/overlays/dev``, applied into a
fresh namespace), on the shipped SeldonDeployment, with the fake clock, registry, ingress metrics and
in-memory event log of ``conftest.World``."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from driftloop_feedback.rollout import RolloutController, RolloutEvent, read_history
from driftloop_feedback.rollout.errors import BackendError, LeaseHeldError, LeaseLostError
from driftloop_feedback.rollout.kube_backend import KubeSeldonBackend, SeldonDeployment, WriteHook
from driftloop_feedback.rollout.kube_lease import KubeLease, lease_name_for
from driftloop_feedback.validate import ValidationSettings
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.apps_v1 import DeploymentSpec
from lightkube.models.core_v1 import PodTemplateSpec
from lightkube.models.meta_v1 import LabelSelector, ObjectMeta
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from driftloop.kube.full_apiserver import FullKubeAPIServer
from tests.rollout.conftest import CANDIDATE, CHAMPION, MODEL, World

ROOT = Path(__file__).resolve().parents[2]
SA = "driftloop-rollout-controller"
DEPLOYMENT = "pump-bearing-temp"
LEASE = lease_name_for(DEPLOYMENT)
GOOD, BAD = 0.0, 3.0  # the canary's served error; the champion is off by 1
CANDIDATE_URI = f"models:/{MODEL}/{CANDIDATE}"
CHAMPION_URI = f"models:/{MODEL}@champion"


@pytest.fixture(scope="module")
def shipped(kubectl: str) -> list[dict[str, Any]]:
    """From the rendered dev overlay: the controller's ServiceAccount, Role, RoleBinding and Lease, and the
    SeldonDeployment."""
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests" / "overlays" / "dev")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    wanted = {("ServiceAccount", SA), ("Role", SA), ("RoleBinding", SA), ("Lease", LEASE)}
    wanted.add(("SeldonDeployment", DEPLOYMENT))
    docs = [d for d in yaml.safe_load_all(out) if d and (d["kind"], d["metadata"]["name"]) in wanted]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == sorted(wanted)
    return docs


@dataclass
class Cluster:
    server: FullKubeAPIServer
    namespace: str
    controller_kubeconfig: Path
    clients: list[Client] = field(default_factory=list)

    def _client(self, kubeconfig: Path) -> Client:
        client = Client(KubeConfig.from_file(kubeconfig), namespace=self.namespace)
        self.clients.append(client)
        return client

    def controller_client(self) -> Client:
        """Authenticated only by the controller ServiceAccount's token."""
        return self._client(self.controller_kubeconfig)

    def admin(self) -> Client:
        return self._client(self.server.kubeconfig)

    def sdep(self) -> dict[str, Any]:
        return dict(self.admin().get(SeldonDeployment, DEPLOYMENT).to_dict())

    def traffic(self) -> dict[str, int]:
        return {p["name"]: int(p.get("traffic", 0)) for p in self.sdep()["spec"]["predictors"]}

    def model_uri(self, predictor: str, node: str = "bearing-temp") -> str:
        (p,) = [p for p in self.sdep()["spec"]["predictors"] if p["name"] == predictor]
        graph = p["graph"]
        return str(graph["modelUri"] if graph["name"] == node else graph["children"][0]["modelUri"])

    def human_edit(self, ops: list[dict[str, Any]]) -> None:
        """A person's ``kubectl edit``: a JSON patch under the admin's identity."""
        self.admin().patch(
            SeldonDeployment, DEPLOYMENT, ops, patch_type=PatchType.JSON, field_manager="kubectl-edit"
        )

    def lease_spec(self) -> Any:
        return self.admin().get(Lease, LEASE).spec


@pytest.fixture
def cluster(
    full_apiserver: FullKubeAPIServer, kubectl: str, shipped: list[dict[str, Any]], tmp_path: Path
) -> Iterator[Cluster]:
    namespace = f"ro-{uuid.uuid4().hex[:10]}"
    full_apiserver.create_namespace(namespace)
    docs = []
    for doc in shipped:
        doc = json.loads(json.dumps(doc))
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
        docs.append(doc)
    manifest = tmp_path / "shipped.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    subprocess.run(
        [kubectl, "--kubeconfig", str(full_apiserver.kubeconfig), "apply", "-f", str(manifest)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    token = full_apiserver.service_account_token(namespace, SA)
    c = Cluster(full_apiserver, namespace, full_apiserver.token_kubeconfig(token, f"rollout-{namespace}"))
    try:
        yield c
    finally:
        for client in c.clients:
            client.close()


def kube_controller(
    world: World, cluster: Cluster, holder: str, before_write: WriteHook | None = None
) -> tuple[RolloutController, KubeSeldonBackend]:
    """The controller with the Kubernetes backend and Lease, both on the controller's own token."""
    s = world.settings(namespace=cluster.namespace, backend="kubernetes")
    client = cluster.controller_client()
    backend = KubeSeldonBackend(client, before_write=before_write)
    lease = KubeLease(client, s.namespace, LEASE, s.key, s.lease_ttl_s, world.clock, holder=holder)
    validation = ValidationSettings(min_examples=20, loss_bound=5.0, alpha=0.05)
    ctl = RolloutController(
        s, backend, world.registry, world.log, lease, world.ops, validation, clock=world.clock
    )
    world.controllers.append(ctl)
    return ctl, backend


def events(world: World, cluster: Cluster) -> list[RolloutEvent]:
    return read_history(world.log, "driftloop.rollouts", f"{cluster.namespace}/{DEPLOYMENT}")


def step_through(world: World, ctl: RolloutController, served_error: float = GOOD) -> None:
    world.canary_rows(120, served_error)
    world.run(ctl, 60)


def test_the_controller_with_its_own_token_and_the_shipped_role_drives_a_canary_to_promotion(
    world: World, cluster: Cluster
) -> None:
    assert cluster.traffic() == {"main": 100, "canary": 0}
    ctl, _ = kube_controller(world, cluster, "ctl-a")
    ctl.tick(world.clock.t)
    assert cluster.model_uri("canary") == CANDIDATE_URI
    assert cluster.traffic() == {"main": 90, "canary": 10}
    assert cluster.lease_spec().holderIdentity == "ctl-a"
    for weight in (25, 50):
        step_through(world, ctl)
        assert cluster.traffic() == {"main": 100 - weight, "canary": weight}
    step_through(world, ctl)
    assert [e.decision for e in events(world, cluster)][-2:] == ["promoting", "promoted"]
    assert cluster.model_uri("main") == CANDIDATE_URI
    assert cluster.traffic() == {"main": 100, "canary": 0}
    assert cluster.model_uri("main", "bearing-outlier") == f"models:/{MODEL}-outlier@champion"  # untouched
    assert world.registry.aliases["champion"] == CANDIDATE
    assert ctl.metrics.failures.labels("backend")._value.get() == 0
    ctl.stop()
    assert not cluster.lease_spec().holderIdentity  # released


def test_a_bad_candidate_is_rolled_back_on_the_cluster(world: World, cluster: Cluster) -> None:
    ctl, _ = kube_controller(world, cluster, "ctl-a")
    ctl.tick(world.clock.t)
    for _ in range(3):
        step_through(world, ctl, BAD)
    assert [e.decision for e in events(world, cluster)][-1] == "rolled_back"
    assert max(e.weight for e in events(world, cluster)) == 10
    assert cluster.traffic() == {"main": 100, "canary": 0}
    assert cluster.model_uri("main") == CHAMPION_URI
    assert world.registry.tags[CANDIDATE]["driftloop.rollout.status"] == "rejected"


def test_the_controllers_token_is_refused_everything_outside_the_role(
    full_apiserver: FullKubeAPIServer, cluster: Cluster
) -> None:
    client = cluster.controller_client()
    assert client.get(SeldonDeployment, DEPLOYMENT)["metadata"]["name"] == DEPLOYMENT  # inside: allowed
    other = f"other-{uuid.uuid4().hex[:8]}"
    full_apiserver.create_namespace(other)
    deployment = Deployment(
        metadata=ObjectMeta(name="x"),
        spec=DeploymentSpec(selector=LabelSelector(matchLabels={"a": "b"}), template=PodTemplateSpec()),
    )
    refused: list[Callable[[], object]] = [
        lambda: client.get(SeldonDeployment, DEPLOYMENT, namespace=other),
        lambda: list(client.list(SeldonDeployment, namespace=other)),
        lambda: list(client.list(Secret)),
        lambda: client.get(Secret, "anything"),
        lambda: list(client.list(Deployment)),
        lambda: client.create(deployment),
        lambda: client.delete(SeldonDeployment, DEPLOYMENT),
        lambda: client.create(Lease(metadata=ObjectMeta(name="another-lease"))),
        lambda: client.get(Lease, "another-lease"),
        lambda: client.get(Lease, LEASE, namespace=other),
    ]
    for call in refused:
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status.code == 403, caught.value.status.message


def test_a_controller_killed_mid_rollout_is_resumed_from_the_cluster_and_its_lease(
    world: World, cluster: Cluster
) -> None:
    a, _ = kube_controller(world, cluster, "ctl-a")
    a.tick(world.clock.t)
    step_through(world, a)
    assert cluster.traffic() == {"main": 75, "canary": 25}
    a.close()  # killed here: its connections go, no stop(): the split and its Lease stay on the cluster
    b, _ = kube_controller(world, cluster, "ctl-b")
    with pytest.raises(LeaseHeldError, match="ctl-a"):
        b.start(world.clock.t)
    assert cluster.traffic() == {"main": 75, "canary": 25}  # b touched nothing
    world.clock.advance(31)  # past a's lease
    b.start(world.clock.t)
    last = events(world, cluster)[-1]
    assert (last.decision, last.weight, last.controller) == ("resumed", 25, "ctl-b")
    spec = cluster.lease_spec()
    assert (spec.holderIdentity, spec.leaseTransitions) == ("ctl-b", 1)
    with pytest.raises(LeaseLostError, match="ctl-b"):
        a.tick(world.clock.t)  # the dead one, had it woken up, stops without touching anything
    step_through(world, b)
    assert cluster.traffic() == {"main": 50, "canary": 50}
    step_through(world, b)
    assert [e.decision for e in events(world, cluster)][-1] == "promoted"
    assert cluster.model_uri("main") == CANDIDATE_URI and cluster.traffic() == {"main": 100, "canary": 0}


def test_a_restart_reads_a_hand_changed_canary_from_the_cluster_and_aborts(
    world: World, cluster: Cluster
) -> None:
    a, _ = kube_controller(world, cluster, "ctl-a")
    a.tick(world.clock.t)
    assert cluster.traffic()["canary"] == 10
    cluster.human_edit(
        [{"op": "replace", "path": "/spec/predictors/1/graph/children/0/modelUri", "value": "x"}]
    )
    world.clock.advance(31)
    b, _ = kube_controller(world, cluster, "ctl-b")
    b.start(world.clock.t)
    last = events(world, cluster)[-1]
    assert last.decision == "aborted" and "the canary serves x" in last.reason
    assert cluster.traffic() == {"main": 100, "canary": 0}


def test_a_human_edit_between_ticks_is_detected_not_overwritten(world: World, cluster: Cluster) -> None:
    ctl, backend = kube_controller(world, cluster, "ctl-a")
    ctl.tick(world.clock.t)
    assert cluster.traffic() == {"main": 90, "canary": 10}
    cluster.human_edit(
        [
            {"op": "replace", "path": "/spec/predictors/0/traffic", "value": 70},
            {"op": "replace", "path": "/spec/predictors/1/traffic", "value": 30},
        ]
    )
    step_through(world, ctl)  # the check passes; the step to 25 % is refused
    assert cluster.traffic() == {"main": 70, "canary": 30}
    assert ctl.metrics.failures.labels("backend")._value.get() >= 1
    assert "step" not in [e.decision for e in events(world, cluster) if e.weight == 25]
    with pytest.raises(BackendError) as caught:
        backend.set_traffic(cluster.namespace, DEPLOYMENT, {"main": 75, "canary": 25})
    message = str(caught.value)
    assert f"SeldonDeployment {cluster.namespace}/{DEPLOYMENT} was changed by someone else" in message
    assert "main traffic 90 -> 70" in message and "canary traffic 10 -> 30" in message
    assert "kubectl-edit" in message and "Not overwritten" in message
    world.run(ctl, 180)  # no blind retry: the person's split stays
    assert cluster.traffic() == {"main": 70, "canary": 30}


def test_a_human_edit_racing_a_write_is_detected_not_overwritten(world: World, cluster: Cluster) -> None:
    race = {"armed": False}

    def person_edits_main(namespace: str, name: str) -> None:
        if race["armed"]:
            race["armed"] = False
            cluster.human_edit(
                [
                    {
                        "op": "replace",
                        "path": "/spec/predictors/0/graph/children/0/modelUri",
                        "value": "models:/m/7",
                    }
                ]
            )

    ctl, backend = kube_controller(world, cluster, "ctl-a", before_write=person_edits_main)
    ctl.tick(world.clock.t)
    race["armed"] = True
    step_through(world, ctl)  # read at 10 %, the person edits, then the controller's write to 25 %
    assert not race["armed"]
    assert cluster.model_uri("main") == "models:/m/7"
    assert cluster.traffic() == {"main": 90, "canary": 10}
    with pytest.raises(
        BackendError, match="main/bearing-temp modelUri models:/pump-bearing-temp@champion -> models:/m/7"
    ):
        backend.set_traffic(cluster.namespace, DEPLOYMENT, {"main": 75, "canary": 25})


def test_a_status_only_write_in_between_is_not_a_human_edit(world: World, cluster: Cluster) -> None:
    """The Seldon operator writes ``status`` all the time: it moves resourceVersion, not generation."""
    race = {"armed": False}

    def operator_reports(namespace: str, name: str) -> None:
        if not race["armed"]:
            return
        race["armed"] = False
        with cluster.server.connection().http_client() as http:
            response = http.patch(
                f"/apis/machinelearning.seldon.io/v1/namespaces/{namespace}/seldondeployments/{name}/status",
                content=json.dumps({"status": {"state": "Available", "description": "replicas ready"}}),
                headers={"Content-Type": "application/merge-patch+json"},
            )
            assert response.status_code == 200, response.text

    ctl, _ = kube_controller(world, cluster, "ctl-a", before_write=operator_reports)
    ctl.tick(world.clock.t)
    race["armed"] = True
    step_through(world, ctl)  # read at 10 %, the operator writes status, then the write to 25 %
    assert not race["armed"]
    assert cluster.sdep()["status"]["state"] == "Available"
    assert cluster.traffic() == {"main": 75, "canary": 25}
    assert ctl.metrics.failures.labels("backend")._value.get() == 0


def test_the_backend_watches_the_deployment(world: World, cluster: Cluster) -> None:
    backend = KubeSeldonBackend(cluster.controller_client())
    assert backend.read(cluster.namespace, DEPLOYMENT).weight("canary") == 0
    cluster.human_edit([{"op": "replace", "path": "/spec/predictors/1/traffic", "value": 5}])
    changes = backend.watch(cluster.namespace, DEPLOYMENT, timeout_s=10)
    kind, state = next(changes)
    changes.close()
    assert kind == "MODIFIED" and state.weight("canary") == 5
    assert CHAMPION == 1  # the registry's champion is the one the deployment serves at rest


def test_rollout_status_reads_the_cluster_when_the_backend_setting_says_kubernetes(
    world: World, cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from driftloop_feedback.rollout.cli import rollout

    world.clock.t = time.time()  # the command compares the Lease's renewTime with the wall clock
    ctl, _ = kube_controller(world, cluster, "ctl-a")
    ctl.tick(world.clock.t)
    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    env = {
        "DRIFTLOOP_ROLLOUT_BACKEND": "kubernetes",
        "DRIFTLOOP_ROLLOUT_KUBECONFIG": str(cluster.controller_kubeconfig),
        "DRIFTLOOP_ROLLOUT_NAMESPACE": cluster.namespace,
    }
    result = CliRunner().invoke(rollout, ["status"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{cluster.namespace}/{DEPLOYMENT}: traffic main=90, canary=10" in result.output
    assert f"canary: bearing-outlier=models:/{MODEL}-outlier@champion, bearing-temp={CANDIDATE_URI}" in (
        result.output
    )
    assert "lease: ctl-a (expires in" in result.output
    env["DRIFTLOOP_ROLLOUT_KUBECONFIG"] = str(tmp_path / "missing.kubeconfig")
    result = CliRunner().invoke(rollout, ["status"], env=env)
    assert result.exit_code == 1 and "DRIFTLOOP_ROLLOUT_KUBECONFIG" in result.output
