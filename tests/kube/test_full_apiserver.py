"""Upstream kube-apiserver (driftloop/kube/kube-apiserver): built-in resources, RBAC with service-account
tokens, and the CRDs the project's manifests use, all driven with kubectl as a user would."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftloop.kube.errors import KubeAPIError, raise_for_status
from driftloop.kube.full_apiserver import SERVICE_CLUSTER_IP_RANGE, FullKubeAPIServer
from driftloop.kube.sdep_client import SeldonDeploymentClient
from tests.kube.sdeps import canary_sdep

pytestmark = pytest.mark.integration

ROLLOUT_SA = "driftloop-rollout"


def run_kubectl(
    server: FullKubeAPIServer, kubectl_bin: str, *args: str, kubeconfig: Path | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_bin, *args],
        env=server.kubectl_env(kubeconfig),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fresh_namespace(server: FullKubeAPIServer) -> str:
    name = f"f-{uuid.uuid4().hex[:10]}"
    server.create_namespace(name)
    return name


def app_objects(namespace: str) -> list[dict[str, Any]]:
    """A small app: ConfigMap, Secret, Deployment, Service, ServiceAccount, Role, RoleBinding, Lease."""
    labels = {"app": "joiner"}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "joiner"}, "data": {"TOPIC": "preds"}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kafka-credentials"},
            "type": "Opaque",
            "stringData": {"password": "not-a-real-one"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "joiner", "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "joiner",
                        "containers": [
                            {
                                "name": "joiner",
                                "image": "driftloop/loop:0.1.0",
                                "envFrom": [{"configMapRef": {"name": "joiner"}}],
                                "ports": [{"containerPort": 8080}],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "joiner"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "joiner"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ROLLOUT_SA}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": ROLLOUT_SA},
            "rules": [
                {
                    "apiGroups": ["machinelearning.seldon.io"],
                    "resources": ["seldondeployments"],
                    "verbs": ["get", "list", "watch", "patch"],
                },
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "resourceNames": [ROLLOUT_SA],
                    "verbs": ["get", "update"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ROLLOUT_SA},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLLOUT_SA},
            "subjects": [{"kind": "ServiceAccount", "name": ROLLOUT_SA, "namespace": namespace}],
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": ROLLOUT_SA},
            "spec": {"holderIdentity": "nobody", "leaseDurationSeconds": 15},
        },
    ]


def apply(server: FullKubeAPIServer, kubectl_bin: str, namespace: str, docs: list[dict[str, Any]]) -> None:
    result = run_kubectl(
        server,
        kubectl_bin,
        "apply",
        "--server-side",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump_all(docs),
    )
    assert result.returncode == 0, result.stderr


def get_json(server: FullKubeAPIServer, kubectl_bin: str, namespace: str, *what: str) -> dict[str, Any]:
    result = run_kubectl(server, kubectl_bin, "get", *what, "-n", namespace, "-o", "json")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_built_in_resources_are_applied_stored_and_defaulted(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    namespace = fresh_namespace(full_apiserver)
    apply(full_apiserver, kubectl, namespace, app_objects(namespace))

    deployment = get_json(full_apiserver, kubectl, namespace, "deployment", "joiner")
    assert deployment["spec"]["replicas"] == 2
    # Defaulted by the server, as on a cluster.
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    service = get_json(full_apiserver, kubectl, namespace, "service", "joiner")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["clusterIP"].startswith(SERVICE_CLUSTER_IP_RANGE.split(".0.0/")[0] + ".")
    secret = get_json(full_apiserver, kubectl, namespace, "secret", "kafka-credentials")
    assert "stringData" not in secret and secret["data"] == {"password": "bm90LWEtcmVhbC1vbmU="}
    assert get_json(full_apiserver, kubectl, namespace, "configmap", "joiner")["data"] == {"TOPIC": "preds"}
    assert (
        get_json(full_apiserver, kubectl, namespace, "lease", ROLLOUT_SA)["spec"]["holderIdentity"]
        == "nobody"
    )
    role = get_json(full_apiserver, kubectl, namespace, "role", ROLLOUT_SA)
    assert role["rules"][0]["resources"] == ["seldondeployments"]
    # No controller runs: the Deployment never gets Pods.
    assert get_json(full_apiserver, kubectl, namespace, "pods")["items"] == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["spec"].pop("selector"), "spec.selector: Required value"),
        (
            lambda d: d["spec"]["selector"].update(matchLabels={"app": "other"}),
            "`selector` does not match template `labels`",
        ),
        (lambda d: d["spec"].update(replicas="two"), "replicas"),
        (lambda d: d["spec"]["template"]["spec"].update(containers=[]), "containers: Required value"),
    ],
    ids=["no-selector", "selector-mismatch", "replicas-string", "no-containers"],
)
def test_a_broken_deployment_is_refused(
    full_apiserver: FullKubeAPIServer, kubectl: str, mutate: Any, message: str
) -> None:
    namespace = fresh_namespace(full_apiserver)
    deployment = next(d for d in app_objects(namespace) if d["kind"] == "Deployment")
    mutate(deployment)
    result = run_kubectl(
        full_apiserver, kubectl, "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=yaml.safe_dump(deployment),
    )  # fmt: skip
    assert result.returncode == 1
    assert message in result.stderr
    assert get_json(full_apiserver, kubectl, namespace, "deployments")["items"] == []


def test_nothing_is_created_in_a_namespace_that_does_not_exist(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    result = run_kubectl(
        full_apiserver, kubectl, "create", "configmap", "x", "-n", "no-such-namespace", "--from-literal=a=b"
    )
    assert result.returncode == 1
    assert 'namespaces "no-such-namespace" not found' in result.stderr


def test_service_account_token_is_allowed_what_the_role_grants_and_refused_the_rest(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    namespace = fresh_namespace(full_apiserver)
    apply(full_apiserver, kubectl, namespace, app_objects(namespace))
    with SeldonDeploymentClient(full_apiserver.connection(), namespace=namespace) as admin:
        admin.apply(canary_sdep())
    # `kubectl create token`, as a user mints one (TokenRequest API).
    created = run_kubectl(full_apiserver, kubectl, "create", "token", ROLLOUT_SA, "-n", namespace)
    assert created.returncode == 0, created.stderr
    as_rollout = full_apiserver.token_kubeconfig(created.stdout.strip(), ROLLOUT_SA)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_kubectl(full_apiserver, kubectl, *args, kubeconfig=as_rollout)

    whoami = run("auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{namespace}:{ROLLOUT_SA}"
    )
    # Granted: read and patch SeldonDeployments, get and update its own Lease.
    assert run("get", "sdep", "-n", namespace, "-o", "name").stdout.strip() == (
        "seldondeployment.machinelearning.seldon.io/pump-bearing-temp"
    )
    patch = '[{"op": "replace", "path": "/spec/predictors/0/traffic", "value": 80},' + (
        '{"op": "replace", "path": "/spec/predictors/1/traffic", "value": 20}]'
    )
    patched = run("patch", "sdep", "pump-bearing-temp", "-n", namespace, "--type=json", "-p", patch)
    assert patched.returncode == 0, patched.stderr
    lease = run("get", "lease", ROLLOUT_SA, "-n", namespace, "-o", "json")
    assert lease.returncode == 0, lease.stderr
    # Refused: anything else, in its namespace and elsewhere.
    user = f'User "system:serviceaccount:{namespace}:{ROLLOUT_SA}"'
    refusals = {
        ("get", "secrets", "-n", namespace): 'cannot list resource "secrets"',
        ("get", "deployments", "-n", namespace): 'cannot list resource "deployments"',
        (
            "delete",
            "sdep",
            "pump-bearing-temp",
            "-n",
            namespace,
        ): 'cannot delete resource "seldondeployments"',
        ("get", "sdep", "-n", "default"): 'cannot list resource "seldondeployments"',
        ("create", "configmap", "x", "-n", namespace): 'cannot create resource "configmaps"',
        ("get", "lease", "someone-else", "-n", namespace): 'cannot get resource "leases"',
    }
    for args, message in refusals.items():
        refused = run(*args)
        assert refused.returncode == 1, args
        assert f"is forbidden: {user} {message}" in refused.stderr, args
    # What the token changed is there; what it was refused did not happen.
    with SeldonDeploymentClient(full_apiserver.connection(), namespace=namespace) as admin:
        stored = admin.get("pump-bearing-temp")
    assert [p["traffic"] for p in stored["spec"]["predictors"]] == [80, 20]


def test_a_token_stops_working_when_its_service_account_is_deleted(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    namespace = fresh_namespace(full_apiserver)
    full_apiserver.create_service_account(namespace, "short-lived")
    as_sa = full_apiserver.token_kubeconfig(
        full_apiserver.service_account_token(namespace, "short-lived"), "short-lived"
    )
    assert run_kubectl(full_apiserver, kubectl, "auth", "whoami", kubeconfig=as_sa).returncode == 0
    deleted = run_kubectl(full_apiserver, kubectl, "delete", "serviceaccount", "short-lived", "-n", namespace)
    assert deleted.returncode == 0, deleted.stderr
    # The server caches a successful token authentication for 10 s (TokenSuccessCacheTTL): after that
    # the token's ServiceAccount is looked up again, and it is gone.
    deadline = time.monotonic() + 30
    while (
        refused := run_kubectl(full_apiserver, kubectl, "auth", "whoami", kubeconfig=as_sa)
    ).returncode == 0:
        assert time.monotonic() < deadline, "the deleted ServiceAccount's token is still accepted after 30 s"
        time.sleep(1)
    assert "error: You must be logged in to the server (Unauthorized)" in refused.stderr


def scaled_object(**trigger_metadata: str) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "joiner"},
        "spec": {
            "scaleTargetRef": {"name": "joiner"},
            "minReplicaCount": 1,
            "maxReplicaCount": 6,
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": "kafka:9092",
                        "consumerGroup": "joiner",
                        "topic": "preds",
                        "lagThreshold": "100",
                        "activationLagThreshold": "10",
                        **trigger_metadata,
                    },
                }
            ],
        },
    }


def test_keda_scaled_object_is_stored_and_its_schema_enforced(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    namespace = fresh_namespace(full_apiserver)
    apply(full_apiserver, kubectl, namespace, [scaled_object()])
    stored = get_json(full_apiserver, kubectl, namespace, "scaledobject", "joiner")
    assert stored["spec"] == scaled_object()["spec"]

    broken = scaled_object()
    broken["metadata"]["name"] = "broken"
    broken["spec"]["maxReplicaCount"] = "six"
    refused = run_kubectl(
        full_apiserver, kubectl, "apply", "--server-side", "-n", namespace, "-f", "-",
        stdin=yaml.safe_dump(broken),
    )  # fmt: skip
    assert refused.returncode == 1
    assert ".spec.maxReplicaCount" in refused.stderr
    missing = scaled_object()
    missing["metadata"]["name"] = "no-triggers"
    del missing["spec"]["triggers"]
    with full_apiserver.connection().http_client() as http, pytest.raises(KubeAPIError) as info:
        raise_for_status(
            http.post(f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects", json=missing)
        )
    assert info.value.status_code == 422
    assert "spec.triggers: Required value" in str(info.value)
