"""Upstream kube-apiserver v1.33 for tests: built-in resources, RBAC and service-account tokens.

The binary is ``k8s.io/kubernetes/cmd/kube-apiserver`` built from Go modules (``kube-apiserver/go.mod``,
by ``.ci/setup.d/kube.sh``), run against Debian's etcd on free 127.0.0.1 ports like
:class:`~driftloop.kube.testserver.LocalKubeAPIServer` says. It serves Namespaces,
Deployments, Services, ConfigMaps, Secrets, ServiceAccounts, RBAC, Leases and everything else built in,
authorises with RBAC (the admin client certificate is in ``system:masters``) and signs service-account
tokens (TokenRequest, ``kubectl create token``). No controller runs: a Deployment gets no Pods, a
Namespace is never finalised after a delete, a ServiceAccount gets no token Secret.

Example::

    with FullKubeAPIServer() as server:   # Seldon's, KEDA's, Strimzi's and the Prometheus Operator's CRDs
        server.create_namespace("plant")
        token = server.service_account_token("plant", "rollout")   # the ServiceAccount must exist
        env = server.kubectl_env(server.token_kubeconfig(token, "rollout"))

``python -m driftloop.kube.full_apiserver`` runs one in the foreground and prints its kubeconfig path.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from driftloop.kube.certs import write_service_account_keys
from driftloop.kube.connection import write_token_kubeconfig
from driftloop.kube.errors import KubeError, raise_for_status
from driftloop.kube.seldon_crd import CRD_DIR, installed_seldon_crd, load_crd_file
from driftloop.kube.testserver import BIN_DIR, SETUP_HINT, LocalKubeAPIServer

# go.mod requires k8s.io/kubernetes v1.33.x and replaces every k8s.io staging module by its v0.33.x.
FULL_APISERVER_SRC = Path(__file__).parent / "kube-apiserver"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Only a range to allocate Services' cluster IPs from: nothing routes to it.
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KEDA_CRDS = ("keda-scaledobject-crd.yaml", "keda-triggerauthentication-crd.yaml")
# Strimzi's CRD generator and API classes (Maven Central) that .ci/setup.d/strimzi-crds.sh runs to write
# the KafkaTopic CRD into the cache dir named by this file's hash.
STRIMZI_CRD_POM = CRD_DIR / "strimzi-crd-generator-pom.xml"
STRIMZI_SETUP_HINT = (
    "run `bash .ci/setup.d/strimzi-crds.sh` (or `make setup`): it generates it with Strimzi's CRD generator "
    "from Maven Central"
)

# The Prometheus Operator's release whose PodMonitor CRD .ci/setup.d/prometheus-operator-crds.sh copies from
# its Go module (same value as the script's PROMETHEUS_OPERATOR_VERSION).
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
PODMONITOR_CRD_FILE = "monitoring.coreos.com_podmonitors.yaml"
PROMETHEUS_OPERATOR_SETUP_HINT = (
    "run `bash .ci/setup.d/prometheus-operator-crds.sh` (or `make setup`): it copies it from the Prometheus "
    "Operator's Go module through the Go module proxy"
)


def full_apiserver_binary_name() -> str:
    """``driftloop-kube-apiserver-full-<hash of go.mod and go.sum>``, as ``.ci/setup.d/kube.sh`` names it."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((FULL_APISERVER_SRC / name).read_bytes())
    return f"driftloop-kube-apiserver-full-{digest.hexdigest()[:12]}"


def find_full_apiserver() -> Path:
    """``$DRIFTLOOP_KUBE_APISERVER``, else the build of the current go.mod/go.sum in ``BIN_DIR``."""
    override = os.environ.get("DRIFTLOOP_KUBE_APISERVER")
    if override:
        if not os.access(override, os.X_OK):
            raise KubeError(f"DRIFTLOOP_KUBE_APISERVER={override} is not an executable file")
        return Path(override)
    binary = BIN_DIR / full_apiserver_binary_name()
    if not os.access(binary, os.X_OK):
        raise KubeError(f"kube-apiserver {binary} is not built (module {FULL_APISERVER_SRC}): {SETUP_HINT}")
    return binary


def strimzi_crd_path() -> Path:
    """Where ``.ci/setup.d/strimzi-crds.sh`` writes Strimzi's KafkaTopic CRD:
    ``$DRIFTLOOP_STRIMZI_CRDS/kafkatopic-crd.yaml``, else under
    ``~/.cache/driftloop/strimzi-crds/<first 16 hex of the pom's sha256>/``."""
    override = os.environ.get("DRIFTLOOP_STRIMZI_CRDS")
    if override:
        return Path(override) / "kafkatopic-crd.yaml"
    key = hashlib.sha256(STRIMZI_CRD_POM.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "driftloop" / "strimzi-crds" / key / "kafkatopic-crd.yaml"


def strimzi_kafkatopic_crd() -> dict[str, Any]:
    """Strimzi's KafkaTopic CRD, written by Strimzi's own CRD generator from its pinned API classes (as
    Strimzi's build writes the CRD its release installs)."""
    path = strimzi_crd_path()
    if not path.is_file():
        raise KubeError(f"Strimzi's KafkaTopic CRD {path} is not generated: {STRIMZI_SETUP_HINT}")
    return load_crd_file(path)


def podmonitor_crd_path() -> Path:
    """Where ``.ci/setup.d/prometheus-operator-crds.sh`` copies the Prometheus Operator's PodMonitor CRD:
    ``$DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS/monitoring.coreos.com_podmonitors.yaml``, else under
    ``~/.cache/driftloop/prometheus-operator-crds/<PROMETHEUS_OPERATOR_VERSION>/``."""
    override = os.environ.get("DRIFTLOOP_PROMETHEUS_OPERATOR_CRDS")
    if override:
        return Path(override) / PODMONITOR_CRD_FILE
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (
        cache / "driftloop" / "prometheus-operator-crds" / PROMETHEUS_OPERATOR_VERSION / PODMONITOR_CRD_FILE
    )


def prometheus_operator_podmonitor_crd() -> dict[str, Any]:
    """The Prometheus Operator's PodMonitor CRD as its release ships it (the YAML of its repository at
    ``PROMETHEUS_OPERATOR_VERSION``, unchanged)."""
    path = podmonitor_crd_path()
    if not path.is_file():
        raise KubeError(
            f"the Prometheus Operator's PodMonitor CRD {path} is missing: {PROMETHEUS_OPERATOR_SETUP_HINT}"
        )
    return load_crd_file(path)


def default_crds() -> tuple[dict[str, Any], ...]:
    """Seldon's SeldonDeployment CRD as its release installs it, KEDA's ScaledObject and
    TriggerAuthentication CRDs as KEDA v2.18.0 ships them (``crds/SOURCES.md``), Strimzi's KafkaTopic
    CRD as Strimzi's CRD generator writes it (``strimzi_kafkatopic_crd``) and the Prometheus Operator's
    PodMonitor CRD as its release ships it (``prometheus_operator_podmonitor_crd``)."""
    return (
        installed_seldon_crd(),
        *(load_crd_file(CRD_DIR / name) for name in KEDA_CRDS),
        strimzi_kafkatopic_crd(),
        prometheus_operator_podmonitor_crd(),
    )


class FullKubeAPIServer(LocalKubeAPIServer):
    """etcd + kube-apiserver on 127.0.0.1: RBAC, service-account tokens, built-in resources, CRDs."""

    def __init__(
        self,
        crds: Sequence[Mapping[str, Any]] | None = None,
        start_timeout_s: float = 120.0,
        keep_dir: bool = False,
    ) -> None:
        super().__init__(
            crds=default_crds() if crds is None else crds, start_timeout_s=start_timeout_s, keep_dir=keep_dir
        )

    # -- namespaces and service accounts -----------------------------------------------------------------
    def create_namespace(self, name: str) -> None:
        """Create Namespace ``name`` (already there is fine): with NamespaceLifecycle admission on, nothing
        can be created in a namespace that does not exist."""
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        with self.connection().http_client() as http:
            response = http.post("/api/v1/namespaces", json=body)
            if response.status_code != 409:
                raise_for_status(response)

    def create_service_account(self, namespace: str, name: str) -> None:
        """Create ServiceAccount ``name`` in ``namespace`` (already there is fine)."""
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        with self.connection().http_client() as http:
            response = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", json=body)
            if response.status_code != 409:
                raise_for_status(response)

    def service_account_token(self, namespace: str, name: str, expiration_s: int = 3600) -> str:
        """A token for ServiceAccount ``namespace/name`` from the TokenRequest API (what
        ``kubectl create token`` and the kubelet's projected volumes use), signed by this server."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_s},
        }
        with self.connection().http_client() as http:
            response = http.post(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=body)
            raise_for_status(response)
            return str(response.json()["status"]["token"])

    def token_kubeconfig(self, token: str, name: str) -> Path:
        """A kubeconfig ``<dir>/<name>.kubeconfig`` that authenticates with ``token`` only."""
        assert self.dir is not None and self.certs is not None, "the server is not running"
        return write_token_kubeconfig(
            self.dir / f"{name}.kubeconfig", self.url, self.certs.ca_cert, token, name=name
        )

    # -- internals -------------------------------------------------------------------------------------
    def _find_apiserver(self) -> Path:
        return find_full_apiserver()

    def _apiserver_argv(self, apiserver_bin: Path, port: int) -> list[str]:
        assert self.dir is not None and self.certs is not None
        keys = write_service_account_keys(self.dir / "pki")
        return [
            str(apiserver_bin),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.dir / 'serving'}",
            f"--tls-cert-file={self.certs.server_cert}",
            f"--tls-private-key-file={self.certs.server_key}",
            f"--client-ca-file={self.certs.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={keys.public_key}",
            f"--service-account-signing-key-file={keys.signing_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # The `kubernetes` Service's Endpoints would point at 127.0.0.1, which Endpoints refuse.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]


def main() -> None:
    """Run a server in the foreground until Ctrl-C; print how to reach it."""
    with FullKubeAPIServer() as server:
        print(f"kube-apiserver {server.url}\nexport KUBECONFIG={server.kubeconfig}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
