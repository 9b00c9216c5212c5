"""The cluster manifests (``manifests/base`` + ``manifests/overlays/{dev,prod}``) and the Dockerfiles.

Each overlay is rendered by the real ``kubectl kustomize`` and its objects are checked against what the
code expects: the SeldonDeployment passes ``driftloop validate`` and its MLServer containers bind distinct
metrics ports; the PodMonitor scrapes the executor's and the outlier node's ports; the rollout
controller's Role grants exactly the verbs it uses and nothing else; no Secret value is committed; the
joiner's KEDA ceiling never exceeds its topics' partitions; each worker runs a real ``driftloop`` command
with settings the code reads; the topics are the code's default names. The Dockerfiles pass hadolint
(installed by ``.ci/setup.d/hadolint.sh``) and ``docker/healthcheck.py`` is run against a real HTTP server.
"""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from driftloop_feedback.api.settings import FeedbackSettings
from driftloop_feedback.join.settings import JoinerSettings
from driftloop_feedback.learn.settings import TrainerSettings
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.rollout.settings import RolloutSettings
from driftloop_feedback.validate.settings import ValidatorSettings
from pydantic_settings import BaseSettings

from driftloop.cli import cli
from driftloop.eventlog.settings import KafkaSettings
from driftloop.kube.errors import KubeError
from driftloop.kube.full_apiserver import (
    FullKubeAPIServer,
    default_crds,
    podmonitor_crd_path,
    strimzi_crd_path,
)
from driftloop.settings import StateSettings
from tests.conftest import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
OVERLAYS = ("dev", "prod")
DOCKERFILES = sorted((REPO_ROOT / "docker").glob("*.Dockerfile"))

# What the controller calls (docs/kubernetes-testing.md, issue 16): read, watch and JSON-patch the
# SeldonDeployments; read and renew its one Lease.
ROLLOUT_ROLE_RULES = [
    {
        "apiGroups": ["machinelearning.seldon.io"],
        "resources": ["seldondeployments"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["driftloop-rollout-pump-bearing-temp"],
        "verbs": ["get", "update"],
    },
]
# Settings classes by env prefix: every DRIFTLOOP_* key the manifests set must be a field of one
# (DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS is StateSettings' kafka_bootstrap_servers).
SETTINGS: dict[str, type[BaseSettings]] = {
    "DRIFTLOOP_FEEDBACK_": FeedbackSettings,
    "DRIFTLOOP_JOINER_": JoinerSettings,
    "DRIFTLOOP_MONITOR_": MonitorSettings,
    "DRIFTLOOP_TRAINER_": TrainerSettings,
    "DRIFTLOOP_VALIDATOR_": ValidatorSettings,
    "DRIFTLOOP_ROLLOUT_": RolloutSettings,
    "DRIFTLOOP_KAFKA_": KafkaSettings,
    "DRIFTLOOP_": StateSettings,
}
# Read by the images themselves (docker/healthcheck.py) or by the worker commands' shared CLI
# (driftloop_feedback.worker_cli.metrics_host), not by a settings class.
IMAGE_ENV = {"DRIFTLOOP_HEALTHCHECK_URL", "DRIFTLOOP_METRICS_HOST"}


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found on PATH: install it (https://kubernetes.io/docs/tasks/tools/)"
    result = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(MANIFESTS / "overlays" / request.param)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in of_kind(docs, kind) if name is None or doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


def config_env(docs: list[dict[str, Any]], container: dict[str, Any], namespace: str) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and literal env values."""
    env: dict[str, str] = {}
    maps = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "ConfigMap")}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = maps[source["configMapRef"]["name"]]
            assert config_map["metadata"]["namespace"] == namespace
            env.update(config_map.get("data", {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


# -- rendering and the SeldonDeployment -------------------------------------------------------------------


def test_every_overlay_renders_the_whole_loop(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    deployments = {doc["metadata"]["name"] for doc in of_kind(docs, "Deployment")}
    assert deployments == {
        "feedback-api",
        "joiner",
        "monitor",
        "trainer",
        "validator",
        "rollout-controller",
        "mlflow",
    }
    for kind in ("SeldonDeployment", "PodMonitor", "Role", "RoleBinding", "ScaledObject", "Lease"):
        one(docs, kind)
    assert {d["spec"]["topicName"] for d in of_kind(docs, "KafkaTopic")} >= {"seldon", "driftloop.labelled"}
    # Each Deployment runs as its own ServiceAccount, which the render holds, in its namespace.
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "ServiceAccount")}
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert (deployment["metadata"]["namespace"], pod["serviceAccountName"]) in accounts
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_rendered_seldon_deployment_passes_driftloop_validate(
    overlay: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    name, docs = overlay
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    result = CliRunner().invoke(cli, ["validate", str(rendered)])
    assert result.exit_code == 0, result.output
    assert "pump-bearing-temp: valid" in result.output

    sdep = one(docs, "SeldonDeployment")
    assert sdep["metadata"]["namespace"] == "plant"
    traffic = {p["name"]: p["traffic"] for p in sdep["spec"]["predictors"]}
    assert traffic == {"main": 100, "canary": 0}
    for predictor in sdep["spec"]["predictors"]:
        env = {e["name"]: e["value"] for e in predictor["svcOrchSpec"]["env"]}
        assert env["LOGGER_KAFKA_TOPIC"] == "seldon"
        assert env["LOGGER_KAFKA_BROKER"].endswith(".kafka:9092")
        nodes = [predictor["graph"]]
        while nodes:
            node = nodes.pop()
            assert node["logger"] == {"mode": "all"}, node["name"]
            nodes.extend(node.get("children", []))
        for spec in predictor["componentSpecs"]:
            for container in spec["spec"]["containers"]:
                assert container["image"] == "registry.example.com/driftloop/driftloop-mlserver:0.1.0"
                assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
                assert container["resources"]["requests"] and container["resources"]["limits"]


def test_the_local_manifest_is_the_base_seldon_deployment() -> None:
    """`driftloop up manifests/pump-bearing-temp-canary.yaml` and the cluster run the same graph."""
    local = yaml.safe_load((MANIFESTS / "pump-bearing-temp-canary.yaml").read_text())
    (base,) = of_kind(render(MANIFESTS / "base" / "serving"), "SeldonDeployment")
    assert base == local


# -- metrics ports and the PodMonitor ----------------------------------------------------------------------

# Seldon's executor (service orchestrator) in every predictor pod: HTTP and its `metrics` port on 8000, gRPC
# on 5001 (Seldon Core v1's operator defaults); the names it declares.
EXECUTOR_PORTS = {8000, 5001}
EXECUTOR_PORT_NAMES = {"http", "metrics", "grpc"}
MLSERVER_DEFAULT_METRICS_PORT = 8082  # MLServer's metrics_port when MLSERVER_METRICS_PORT is not set
OUTLIER_RUNTIME = "driftloop_servers.outlier_runtime.OutlierRuntime"


def env_values(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def mlserver_metrics_port(container: dict[str, Any]) -> int:
    return int(env_values(container).get("MLSERVER_METRICS_PORT", MLSERVER_DEFAULT_METRICS_PORT))


def predictor_pods(sdep: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(predictor name, the MLServer containers of one of its pods) for each componentSpec."""
    for predictor in sdep["spec"]["predictors"]:
        for spec in predictor["componentSpecs"]:
            mlservers = [c for c in spec["spec"]["containers"] if "driftloop-mlserver" in c["image"]]
            yield predictor["name"], mlservers


def test_the_mlserver_containers_of_a_pod_bind_distinct_metrics_ports(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """MLServer binds its metrics server in every container: two on one port and the second exits
    (`address already in use`); the operator sets each container's HTTP and gRPC ports, not that one."""
    _, docs = overlay
    pods = list(predictor_pods(one(docs, "SeldonDeployment")))
    assert {name for name, _ in pods} == {"main", "canary"}
    for name, mlservers in pods:
        assert len(mlservers) == 2, name
        ports = [mlserver_metrics_port(c) for c in mlservers]
        assert len(set(ports)) == len(ports), f"{name}: metrics ports {ports} collide"
        assert not set(ports) & EXECUTOR_PORTS, f"{name}: {ports} taken by the executor"
        # Declared ports: what they say is what MLServer binds, with names unique in the pod.
        declared = [port for c in mlservers for port in c.get("ports", [])]
        names = [port["name"] for port in declared]
        assert len(set(names)) == len(names) and not set(names) & EXECUTOR_PORT_NAMES, names
        for container in mlservers:
            for port in container.get("ports", []):
                assert port["containerPort"] == mlserver_metrics_port(container), (name, container["name"])


def test_the_podmonitor_scrapes_the_executor_and_the_outlier_node_of_every_pod(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    """What PrometheusOpsSource queries: the executor's series and the outlier node's, one job."""
    _, docs = overlay
    sdep = one(docs, "SeldonDeployment")
    monitor = one(docs, "PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == sdep["metadata"]["namespace"]
    # Seldon Core v1's labels on every pod of the deployment (main and canary alike).
    assert monitor["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/managed-by": "seldon-core",
            "seldon-deployment-id": sdep["metadata"]["name"],
        }
    }
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [(e["port"], e["path"]) for e in endpoints] == [
        ("metrics", "/prometheus"),
        ("outlier-metrics", "/metrics"),
    ]
    # No target label that would rename the runtime's own deployment_name/predictor_name/model.
    for endpoint in endpoints:
        assert not endpoint.get("relabelings") and not endpoint.get("metricRelabelings"), endpoint
    # Every pod's outlier node declares the port, on the metrics port its MLServer binds.
    for name, mlservers in predictor_pods(sdep):
        (outlier,) = [
            c for c in mlservers if env_values(c)["MLSERVER_MODEL_IMPLEMENTATION"] == OUTLIER_RUNTIME
        ]
        ports = {port["name"]: port["containerPort"] for port in outlier.get("ports", [])}
        assert ports.get("outlier-metrics") == mlserver_metrics_port(outlier), name


# -- RBAC ---------------------------------------------------------------------------------------------------


def test_the_rollout_role_grants_exactly_what_the_controller_calls(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    assert not of_kind(docs, "ClusterRole") and not of_kind(docs, "ClusterRoleBinding")
    role = one(docs, "Role")
    assert role["rules"] == ROLLOUT_ROLE_RULES
    sdep = one(docs, "SeldonDeployment")
    namespace = sdep["metadata"]["namespace"]
    assert role["metadata"]["namespace"] == namespace
    binding = one(docs, "RoleBinding")
    assert binding["metadata"]["namespace"] == namespace
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    controller = one(docs, "Deployment", "rollout-controller")["spec"]["template"]["spec"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": controller["serviceAccountName"], "namespace": namespace}
    ]
    lease = one(docs, "Lease")
    assert [lease["metadata"]["name"]] == ROLLOUT_ROLE_RULES[1]["resourceNames"]
    assert lease["metadata"]["namespace"] == namespace
    # Only the controller mounts an API token.
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is (
            deployment is one(docs, "Deployment", "rollout-controller")
        )


# -- secrets ------------------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|ACCESS_KEY|CREDENTIAL|BACKEND_STORE_URI)", re.IGNORECASE)


def test_no_secret_value_is_committed(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    assert not of_kind(docs, "Secret"), "Secrets are referenced (secretKeyRef/secretRef), never shipped"
    for config_map in of_kind(docs, "ConfigMap"):
        for key in config_map.get("data", {}):
            assert not SECRET_NAME.search(key), f"{config_map['metadata']['name']}: {key} belongs in a Secret"
    for workload in [*of_kind(docs, "Deployment")]:
        for container in containers(workload):
            for item in container.get("env", []):
                if SECRET_NAME.search(item["name"]):
                    assert "secretKeyRef" in item.get("valueFrom", {}), (
                        f"{item['name']} is not a Secret reference"
                    )
    referenced = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for workload in of_kind(docs, "Deployment")
        for container in containers(workload)
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert {"driftloop-feedback", "mlflow-postgres"} <= referenced


def test_no_file_under_manifests_holds_a_secret() -> None:
    for path in sorted(MANIFESTS.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        assert "secretGenerator" not in text, path
        assert not re.search(r"^kind:\s*Secret\s*$", text, re.MULTILINE), path
        for line in text.splitlines():
            key = line.split("=", 1)[0].strip() if path.suffix == ".env" else ""
            assert not (key and SECRET_NAME.search(key)), f"{path}: {line}"


# -- KEDA and the topics ------------------------------------------------------------------------------------


def test_the_joiner_never_scales_beyond_its_partitions(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    scaled = one(docs, "ScaledObject")
    joiner = one(docs, "Deployment", "joiner")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "joiner"
    assert scaled["metadata"]["namespace"] == joiner["metadata"]["namespace"]
    assert "replicas" not in joiner["spec"], "KEDA owns the joiner's replicas"
    partitions = {d["spec"]["topicName"]: d["spec"]["partitions"] for d in of_kind(docs, "KafkaTopic")}
    defaults = {name: field.default for name, field in JoinerSettings.model_fields.items()}
    group = config_env(docs, containers(joiner)[0], "plant")["DRIFTLOOP_JOINER_GROUP_ID"]
    expected = {
        (f"{group}-rekey", defaults["request_log_topic"]),
        (f"{group}-request", defaults["keyed_log_topic"]),
        (f"{group}-request", defaults["feedback_topic"]),
        (f"{group}-asset", defaults["predictions_topic"]),
        (f"{group}-asset", defaults["telemetry_topic"]),
    }
    triggers = scaled["spec"]["triggers"]
    assert {(t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in triggers} == expected
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert int(meta["lagThreshold"]) > int(meta["activationLagThreshold"]) >= 0
        assert scaled["spec"]["maxReplicaCount"] <= partitions[meta["topic"]], meta["topic"]
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    # Co-partitioned inputs, and the partitions the joiner creates, are one number.
    joined = {partitions[topic] for _, topic in expected}
    assert len(joined) == 1
    count = joined.pop()
    env = config_env(docs, containers(joiner)[0], "plant")
    assert int(env["DRIFTLOOP_JOINER_PARTITIONS"]) == count
    feedback_api = config_env(docs, containers(one(docs, "Deployment", "feedback-api"))[0], "plant")
    assert int(feedback_api["DRIFTLOOP_FEEDBACK_PARTITIONS"]) == count


def test_the_topics_are_the_codes_default_names_with_retention(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    joiner = {n: f.default for n, f in JoinerSettings.model_fields.items()}
    used = {
        joiner["request_log_topic"],
        joiner["keyed_log_topic"],
        joiner["feedback_topic"],
        joiner["telemetry_topic"],
        joiner["predictions_topic"],
        joiner["labelled_topic"],
        FeedbackSettings.model_fields["feedback_topic"].default,
        MonitorSettings.model_fields["drift_topic"].default,
        MonitorSettings.model_fields["alarm_topic"].default,
        TrainerSettings.model_fields["labelled_topic"].default,
        TrainerSettings.model_fields["drift_topic"].default,
        ValidatorSettings.model_fields["labelled_topic"].default,
        RolloutSettings.model_fields["labelled_topic"].default,
        RolloutSettings.model_fields["rollouts_topic"].default,
        StateSettings.model_fields["state_topic"].default,
    }
    topics = of_kind(docs, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics} == used
    for topic in topics:
        assert topic["metadata"]["namespace"] == "kafka"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "plant"
        assert topic["spec"]["partitions"] >= 1
        if topic["spec"]["config"]["cleanup.policy"] != "compact":  # the state changelog keeps by key
            assert int(topic["spec"]["config"]["retention.ms"]) > 0
        assert topic["spec"]["config"]["min.insync.replicas"] <= topic["spec"]["replicas"]


# -- the workers' commands and settings ---------------------------------------------------------------------


def test_each_worker_runs_a_real_command_with_settings_the_code_reads(
    overlay: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = overlay
    for deployment in of_kind(docs, "Deployment"):
        namespace = deployment["metadata"]["namespace"]
        for container in containers(deployment):
            if "command" in container:  # mlflow server: checked by the next test
                continue
            args = container["args"]
            result = CliRunner().invoke(cli, [*args, "--help"])
            assert result.exit_code == 0, f"driftloop {' '.join(args)}: {result.output}"
            env = config_env(docs, container, namespace)
            env.update({item["name"]: "" for item in container.get("env", [])})
            for key in env:
                if not key.startswith("DRIFTLOOP_") or key in IMAGE_ENV:
                    continue
                readers = [
                    cls
                    for prefix, cls in SETTINGS.items()
                    if key.startswith(prefix) and key.removeprefix(prefix).lower() in cls.model_fields
                ]
                assert readers, f"{deployment['metadata']['name']}: no settings class reads {key}"


def test_the_mlflow_server_command_and_its_settings_exist(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    from mlflow.cli import server

    _, docs = overlay
    mlflow = one(docs, "Deployment", "mlflow")
    (container,) = containers(mlflow)
    assert container["command"] == ["mlflow", "server"]
    known = {param.envvar for param in server.params if isinstance(param.envvar, str)}
    env = config_env(docs, container, "mlops")
    env.update({item["name"]: "" for item in container.get("env", [])})
    assert set(env) <= known, set(env) - known
    assert env["MLFLOW_SERVE_ARTIFACTS"] == "true"
    backend = container["env"][0]
    assert backend["name"] == "MLFLOW_BACKEND_STORE_URI" and "secretKeyRef" in backend["valueFrom"]


# -- Dockerfiles --------------------------------------------------------------------------------------------


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    assert found.exists(), "hadolint is missing: run `bash .ci/setup.d/hadolint.sh` (or .ci/setup)"
    return str(found)


def test_the_dockerfiles_pass_hadolint() -> None:
    assert {p.name for p in DOCKERFILES} == {"loop.Dockerfile", "mlserver.Dockerfile"}
    result = subprocess.run(
        [hadolint(), "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_refuses_an_unpinned_root_dockerfile(tmp_path: Path) -> None:
    """The linter the test above relies on does fail: an unpinned base and a root user are reported."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install mlserver\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3002" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_each_image_is_pinned_non_root_and_has_a_healthcheck(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases and all(re.fullmatch(r"[\w./-]+:\d[\w.-]*", base) for base in bases), bases
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("HEALTHCHECK ") for line in lines)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ready" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def health_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_healthcheck_reports_the_servers_answer(health_server: str) -> None:
    script = str(REPO_ROOT / "docker" / "healthcheck.py")

    def check(url: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, script, url], capture_output=True, text=True, timeout=30, env={"PATH": "", **env}
        )

    assert check(f"{health_server}/ready").returncode == 0
    failing = check(f"{health_server}/other")
    assert failing.returncode == 1 and "HTTP Error 503" in failing.stderr
    port = health_server.rsplit(":", 1)[1]
    assert check("http://127.0.0.1:${PORT}/ready", PORT=port).returncode == 0  # $VARS expanded
    server_down = check("http://127.0.0.1:1/ready")
    assert server_down.returncode == 1 and "http://127.0.0.1:1/ready" in server_down.stderr


# -- kubectl apply -k against a full kube-apiserver ----------------------------------------------------

APPLIED = re.compile(r"^(?P<kind>[\w.]+)/(?P<name>[\w.-]+) (created|configured|unchanged)$", re.MULTILINE)
CONTROLLER = "system:serviceaccount:plant:driftloop-rollout-controller"
GROUPS = ["system:serviceaccounts", "system:serviceaccounts:plant", "system:authenticated"]


def kubectl_run(server: FullKubeAPIServer, kubectl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, *args], env=server.kubectl_env(), capture_output=True, text=True, timeout=180
    )


# kubectl's notice when it adopts an object that exists without its annotation: the shared server's
# namespace `plant`, created by an earlier test's fixture (kube_namespace), not an error of the manifests.
_ADOPTED = re.compile(
    r"Warning: resource [\w.]+/[\w.-]+ is missing the kubectl\.kubernetes\.io/last-applied-configuration "
    r"annotation"
)


def stored_kafka_topics(server: FullKubeAPIServer, kubectl: str) -> dict[str, dict[str, Any]]:
    result = kubectl_run(server, kubectl, "get", "-n", "kafka", "kafkatopics.kafka.strimzi.io", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    return {item["metadata"]["name"]: item for item in yaml.safe_load(result.stdout)["items"]}


@pytest.mark.integration
def test_kubectl_apply_k_of_each_overlay_is_accepted_by_a_full_api_server(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    """dev, then prod over it (an upgrade), with plain ``kubectl apply -k`` as docs/kubernetes.md says.
    Every object is schema-checked by the real server: built-in kinds, Seldon's and KEDA's CRDs, and
    Strimzi's KafkaTopic CRD as Strimzi's generator writes it (.ci/setup.d/strimzi-crds.sh)."""
    full_apiserver.create_namespace("kafka")  # Strimzi's namespace: the Kafka install creates it
    for name in OVERLAYS:
        docs = render(MANIFESTS / "overlays" / name)
        result = kubectl_run(full_apiserver, kubectl, "apply", "-k", str(MANIFESTS / "overlays" / name))
        applied = {(m["kind"].split(".")[0], m["name"]) for m in APPLIED.finditer(result.stdout)}
        expected = {(d["kind"].lower(), d["metadata"]["name"]) for d in docs}
        assert applied == expected, f"{name}:\n{result.stdout}\n{result.stderr}"
        assert result.returncode == 0, result.stderr
        other = [line for line in result.stderr.splitlines() if line and not _ADOPTED.match(line)]
        assert other == [], result.stderr
        # The KafkaTopics are stored as rendered: partitions, replicas, retention, cleanup policy.
        topics = stored_kafka_topics(full_apiserver, kubectl)
        for topic in of_kind(docs, "KafkaTopic"):
            kept = topics[topic["metadata"]["name"]]
            assert kept["apiVersion"] == topic["apiVersion"] == "kafka.strimzi.io/v1"
            assert kept["spec"] == topic["spec"], topic["metadata"]["name"]
            assert kept["metadata"]["labels"]["strimzi.io/cluster"] == "plant"
            assert kept["spec"]["partitions"] == topic["spec"]["partitions"] >= 1
            assert kept["spec"]["config"].get("retention.ms") == topic["spec"]["config"].get("retention.ms")
            assert kept["spec"]["config"]["cleanup.policy"] == topic["spec"]["config"]["cleanup.policy"]
        joiner_topics = [
            d for d in of_kind(docs, "KafkaTopic") if "driftloop.io/partitioning" in d["metadata"]["labels"]
        ]
        partitions = {topics[d["metadata"]["name"]]["spec"]["partitions"] for d in joiner_topics}
        assert partitions == {{"dev": 3, "prod": 12}[name]}  # the overlays' count (docs/kubernetes.md)
        # Stored as rendered: the split at rest and the overlay's KEDA ceiling.
        stored = kubectl_run(full_apiserver, kubectl, "get", "-n", "plant", "sdep,scaledobject", "-o", "yaml")
        assert stored.returncode == 0, stored.stderr
        items = {d["kind"]: d for d in yaml.safe_load(stored.stdout)["items"]}
        traffic = {p["name"]: p["traffic"] for p in items["SeldonDeployment"]["spec"]["predictors"]}
        assert traffic == {"main": 100, "canary": 0}
        want = one(docs, "ScaledObject")["spec"]["maxReplicaCount"]
        assert items["ScaledObject"]["spec"]["maxReplicaCount"] == want
        # The PodMonitor, stored as rendered by the Prometheus Operator's CRD.
        monitors = kubectl_run(full_apiserver, kubectl, "get", "-n", "plant", "podmonitors", "-o", "yaml")
        assert monitors.returncode == 0, monitors.stderr
        (kept,) = yaml.safe_load(monitors.stdout)["items"]
        rendered = one(docs, "PodMonitor")
        assert kept["apiVersion"] == rendered["apiVersion"] == "monitoring.coreos.com/v1"
        assert kept["metadata"]["name"] == rendered["metadata"]["name"]
        assert kept["spec"] == rendered["spec"]

    # The server's RBAC authoriser on the shipped Role and RoleBinding (SubjectAccessReviews for the
    # controller's ServiceAccount): what the controller may do, and what it may not.
    allowed = [
        ("get", "machinelearning.seldon.io", "seldondeployments", "", "plant"),
        ("watch", "machinelearning.seldon.io", "seldondeployments", "", "plant"),
        ("patch", "machinelearning.seldon.io", "seldondeployments", "pump-bearing-temp", "plant"),
        ("update", "coordination.k8s.io", "leases", "driftloop-rollout-pump-bearing-temp", "plant"),
    ]
    refused = [
        ("delete", "machinelearning.seldon.io", "seldondeployments", "pump-bearing-temp", "plant"),
        ("patch", "machinelearning.seldon.io", "seldondeployments", "", "default"),
        ("get", "", "secrets", "", "plant"),
        ("patch", "apps", "deployments", "joiner", "plant"),
        ("create", "coordination.k8s.io", "leases", "", "plant"),
        ("update", "coordination.k8s.io", "leases", "someone-else", "plant"),
    ]
    with full_apiserver.connection().http_client() as http:

        def may(verb: str, group: str, resource: str, name: str, namespace: str) -> bool:
            attributes = {
                "verb": verb,
                "group": group,
                "resource": resource,
                "name": name,
                "namespace": namespace,
            }
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": CONTROLLER, "groups": GROUPS, "resourceAttributes": attributes},
            }
            response = http.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=review)
            assert response.status_code == 201, response.text
            return bool(response.json()["status"].get("allowed", False))

        # The authoriser reads Roles and RoleBindings from its informers' cache: wait until it has them.
        deadline = time.monotonic() + 60
        while not may(*allowed[0]):
            assert time.monotonic() < deadline, "the RoleBinding never reached the RBAC authoriser"
            time.sleep(0.2)
        for call in allowed + refused:
            assert may(*call) is (call in allowed), call


def _base_topic() -> dict[str, Any]:
    topics = of_kind(render(MANIFESTS / "base" / "kafka"), "KafkaTopic")
    return next(t for t in topics if t["spec"]["topicName"] == "seldon")


def _broken(change: str, topic: dict[str, Any]) -> None:
    spec = topic["spec"]
    if change == "partitions a string":
        spec["partitions"] = "6"
    elif change == "no partitions left":
        spec["partitions"] = 0
    elif change == "replicas beyond Kafka's maximum":
        spec["replicas"] = 40000
    elif change == "config a list":
        spec["config"] = ["retention.ms=604800000"]
    elif change == "a typo in spec":
        spec["partiton"] = spec.pop("partitions")
    elif change == "no spec":
        del topic["spec"]
    elif change == "the version Strimzi 1.x no longer serves":
        topic["apiVersion"] = "kafka.strimzi.io/v1beta2"


# What the server says for each broken KafkaTopic (Strimzi's schema, kubectl's Strict field validation).
BROKEN_TOPICS = {
    "partitions a string": "spec.partitions in body must be of type integer",
    "no partitions left": "spec.partitions in body should be greater than or equal to 1",
    "replicas beyond Kafka's maximum": "spec.replicas in body should be less than or equal to 32767",
    "config a list": "spec.config in body must be of type object",
    "a typo in spec": 'unknown field "spec.partiton"',
    "no spec": "spec: Required value",
    "the version Strimzi 1.x no longer serves": 'kind "KafkaTopic" in version "kafka.strimzi.io/v1beta2"',
}


@pytest.mark.integration
@pytest.mark.parametrize("change", list(BROKEN_TOPICS))
def test_a_broken_kafka_topic_is_refused_by_strimzis_schema(
    full_apiserver: FullKubeAPIServer, kubectl: str, change: str
) -> None:
    full_apiserver.create_namespace("kafka")
    topic = _base_topic()
    name = "broken-" + re.sub(r"[^a-z0-9]+", "-", change.lower()).strip("-")
    topic["metadata"]["name"] = name

    def apply(doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump(doc),
            env=full_apiserver.kubectl_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    _broken(change, topic)
    refused = apply(topic)
    assert refused.returncode != 0, refused.stdout
    assert BROKEN_TOPICS[change] in refused.stderr, refused.stderr
    assert name not in stored_kafka_topics(full_apiserver, kubectl)
    # The same topic unbroken is accepted: the refusal was the change's.
    valid = _base_topic()
    valid["metadata"]["name"] = name
    accepted = apply(valid)
    assert accepted.returncode == 0, accepted.stderr
    assert stored_kafka_topics(full_apiserver, kubectl)[name]["spec"] == valid["spec"]
    deleted = kubectl_run(
        full_apiserver, kubectl, "delete", "-n", "kafka", "kafkatopic", name, "--wait=false"
    )
    assert deleted.returncode == 0, deleted.stderr


def _broken_monitor(change: str) -> dict[str, Any]:
    monitor = one(render(MANIFESTS / "components" / "prometheus-operator"), "PodMonitor")
    spec = monitor["spec"]
    if change == "podMetricsEndpoints a map":
        spec["podMetricsEndpoints"] = {e["port"]: {"path": e["path"]} for e in spec["podMetricsEndpoints"]}
    elif change == "no selector":
        del spec["selector"]
    elif change == "a scheme Prometheus cannot scrape":
        spec["podMetricsEndpoints"][0]["scheme"] = "tcp"
    elif change == "a typo in an endpoint":
        spec["podMetricsEndpoints"][1]["pth"] = spec["podMetricsEndpoints"][1].pop("path")
    elif change == "an interval without a unit":
        spec["podMetricsEndpoints"][0]["interval"] = "30"
    return monitor


# What the server says for each broken PodMonitor (the Prometheus Operator's schema, Strict validation).
BROKEN_MONITORS = {
    # An object where the schema has an array: its keys are fields the schema does not know.
    "podMetricsEndpoints a map": 'unknown field "spec.podMetricsEndpoints.metrics"',
    "no selector": "spec.selector: Required value",
    "a scheme Prometheus cannot scrape": 'spec.podMetricsEndpoints[0].scheme: Unsupported value: "tcp"',
    "a typo in an endpoint": 'unknown field "spec.podMetricsEndpoints[1].pth"',
    "an interval without a unit": "spec.podMetricsEndpoints[0].interval in body should match",
}


@pytest.mark.integration
def test_a_broken_podmonitor_is_refused_by_the_prometheus_operators_schema(
    full_apiserver: FullKubeAPIServer, kubectl: str
) -> None:
    full_apiserver.create_namespace("plant")

    def apply(doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kubectl, "apply", "-f", "-"],
            input=yaml.safe_dump(doc),
            env=full_apiserver.kubectl_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stored() -> set[str]:
        result = kubectl_run(full_apiserver, kubectl, "get", "-n", "plant", "podmonitors", "-o", "yaml")
        assert result.returncode == 0, result.stderr
        return {item["metadata"]["name"] for item in yaml.safe_load(result.stdout)["items"]}

    for change, message in BROKEN_MONITORS.items():
        monitor = _broken_monitor(change)
        name = "broken-" + re.sub(r"[^a-z0-9]+", "-", change.lower()).strip("-")
        monitor["metadata"]["name"] = name
        refused = apply(monitor)
        assert refused.returncode != 0, (change, refused.stdout)
        assert message in refused.stderr, (change, refused.stderr)
        assert name not in stored(), change
    # The same PodMonitor unbroken is accepted: the refusals were the changes'.
    valid = _broken_monitor("none")
    valid["metadata"]["name"] = "unbroken-seldon-pods"
    accepted = apply(valid)
    assert accepted.returncode == 0, accepted.stderr
    assert "unbroken-seldon-pods" in stored()
    deleted = kubectl_run(
        full_apiserver, kubectl, "delete", "-n", "plant", "podmonitor", "unbroken-seldon-pods", "--wait=false"
    )
    assert deleted.returncode == 0, deleted.stderr


def test_without_the_podmonitor_crd_the_server_names_the_setup_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS", str(tmp_path))
    assert podmonitor_crd_path() == tmp_path / "monitoring.coreos.com_podmonitors.yaml"
    with pytest.raises(
        KubeError,
        match=r"monitoring\.coreos\.com_podmonitors\.yaml is missing: run "
        r"`bash \.ci/setup\.d/prometheus-operator-crds\.sh`",
    ):
        default_crds()
    monkeypatch.delenv("DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS")
    crds = {crd["metadata"]["name"]: crd for crd in default_crds()}
    (version,) = crds["podmonitors.monitoring.coreos.com"]["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)


def test_without_the_generated_strimzi_crd_the_server_names_the_setup_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_STRIMZI_CRDS", str(tmp_path))
    assert strimzi_crd_path() == tmp_path / "kafkatopic-crd.yaml"
    with pytest.raises(
        KubeError, match=r"kafkatopic-crd\.yaml is not generated: run `bash \.ci/setup\.d/strimzi-crds\.sh`"
    ):
        default_crds()
    monkeypatch.delenv("DRIFTLOOP_STRIMZI_CRDS")
    crds = {crd["metadata"]["name"]: crd for crd in default_crds()}
    (version,) = crds["kafkatopics.kafka.strimzi.io"]["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
