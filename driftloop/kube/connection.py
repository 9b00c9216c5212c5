"""How to reach a Kubernetes API server: from a kubeconfig file, from inside a pod, or written for the
local test server. Produces an ``httpx.Client`` with the right TLS and credentials."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from driftloop.errors import ConfigurationError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeConnection:
    """Server URL plus credentials (client certificate and/or bearer token), PEM kept in memory."""

    server: str
    ca_pem: bytes | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    namespace: str = "default"

    @classmethod
    def from_kubeconfig(cls, path: Path | None = None, context: str | None = None) -> KubeConnection:
        """Read ``path`` (default ``$KUBECONFIG`` or ``~/.kube/config``) and resolve ``context``
        (default: the file's ``current-context``)."""
        if path is None:
            path = Path(
                os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config"
            )
        try:
            config: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigurationError(f"kubeconfig {path} not found: pass its path or set KUBECONFIG") from exc
        name = context or config.get("current-context")
        ctx = _named(config, "contexts", name, path)["context"]
        cluster = _named(config, "clusters", ctx["cluster"], path)["cluster"]
        user = _named(config, "users", ctx["user"], path).get("user") or {}
        base = path.parent
        token = user.get("token")
        if token is None and user.get("tokenFile"):
            token = (base / user["tokenFile"]).read_text().strip()
        return cls(
            server=cluster["server"].rstrip("/"),
            ca_pem=_pem(cluster, "certificate-authority", base),
            client_cert_pem=_pem(user, "client-certificate", base),
            client_key_pem=_pem(user, "client-key", base),
            token=token,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
            namespace=ctx.get("namespace", "default"),
        )

    @classmethod
    def in_cluster(cls) -> KubeConnection:
        """The pod's service account, as client-go's ``rest.InClusterConfig`` finds it."""
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ConfigurationError(
                "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/PORT unset): use a kubeconfig"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(
            server=f"https://{host}:{port}",
            ca_pem=(SERVICE_ACCOUNT_DIR / "ca.crt").read_bytes(),
            token=(SERVICE_ACCOUNT_DIR / "token").read_text().strip(),
            namespace=(SERVICE_ACCOUNT_DIR / "namespace").read_text().strip(),
        )

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.insecure_skip_tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ca_pem is not None:
            context = ssl.create_default_context(cadata=self.ca_pem.decode())
        if self.client_cert_pem is not None and self.client_key_pem is not None:
            # ssl can only load a client certificate from files: write them for the call, then delete.
            with tempfile.TemporaryDirectory(prefix="driftloop-kube-") as tmp:
                cert, key = Path(tmp) / "client.crt", Path(tmp) / "client.key"
                cert.write_bytes(self.client_cert_pem)
                key.touch(mode=0o600)
                key.write_bytes(self.client_key_pem)
                context.load_cert_chain(cert, key)
        return context

    def http_client(self, timeout_s: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(
            base_url=self.server, verify=self.ssl_context(), headers=headers, timeout=timeout_s
        )


def write_kubeconfig(
    path: Path, server: str, ca_cert: Path, client_cert: Path, client_key: Path, name: str = "driftloop-test"
) -> Path:
    """Write a kubeconfig with one cluster/user/context ``name`` that refers to the PEM files by path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [
            {"name": name, "user": {"client-certificate": str(client_cert), "client-key": str(client_key)}}
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def _named(config: dict[str, Any], section: str, name: str | None, path: Path) -> dict[str, Any]:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return dict(entry)
    raise ConfigurationError(f"kubeconfig {path} has no {section[:-1]} named {name!r}")


def _pem(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return (base / section[key]).read_bytes()
    return None


def write_token_kubeconfig(path: Path, server: str, ca_cert: Path, token: str, name: str) -> Path:
    """Write a kubeconfig with one cluster/user/context ``name`` whose user authenticates with ``token``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
