"""Unit tests: kubeconfig reading, test PKI, finding the binaries (no server needed)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from driftloop.errors import ConfigurationError
from driftloop.kube import full_apiserver
from driftloop.kube.certs import write_service_account_keys, write_test_pki
from driftloop.kube.connection import KubeConnection, write_kubeconfig
from driftloop.kube.errors import KubeError


def test_test_pki_client_is_in_system_masters(tmp_path: Path) -> None:
    paths = write_test_pki(tmp_path / "pki", user="alice")
    client = x509.load_pem_x509_certificate(paths.client_cert.read_bytes())
    subject = {attr.oid: attr.value for attr in client.subject}
    assert subject[x509.NameOID.COMMON_NAME] == "alice"
    assert subject[x509.NameOID.ORGANIZATION_NAME] == "system:masters"
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert paths.client_key.stat().st_mode & 0o077 == 0


def test_kubeconfig_with_file_paths_round_trips(tmp_path: Path) -> None:
    pki = write_test_pki(tmp_path / "pki")
    path = write_kubeconfig(
        tmp_path / "kubeconfig", "https://127.0.0.1:6443/", pki.ca_cert, pki.client_cert, pki.client_key
    )
    conn = KubeConnection.from_kubeconfig(path)
    assert conn.server == "https://127.0.0.1:6443"
    assert conn.ca_pem == pki.ca_cert.read_bytes()
    assert conn.client_cert_pem == pki.client_cert.read_bytes()
    assert conn.namespace == "default"
    assert isinstance(conn.ssl_context(), ssl.SSLContext)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_kubeconfig_with_embedded_data_token_and_named_context(tmp_path: Path) -> None:
    pki = write_test_pki(tmp_path / "pki")
    config = {
        "clusters": [
            {
                "name": "plant",
                "cluster": {
                    "server": "https://k8s.plant:443",
                    "certificate-authority-data": _b64(pki.ca_cert),
                },
            }
        ],
        "users": [{"name": "ops", "user": {"token": "s3cr3t"}}],
        "contexts": [
            {"name": "other", "context": {"cluster": "missing", "user": "ops"}},
            {"name": "ops@plant", "context": {"cluster": "plant", "user": "ops", "namespace": "mlops"}},
        ],
        "current-context": "other",
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    conn = KubeConnection.from_kubeconfig(path, context="ops@plant")
    assert (conn.server, conn.token, conn.namespace) == ("https://k8s.plant:443", "s3cr3t", "mlops")
    assert conn.ca_pem == pki.ca_cert.read_bytes()
    with conn.http_client() as http:
        assert http.headers["Authorization"] == "Bearer s3cr3t"
    with pytest.raises(ConfigurationError, match="no cluster named 'missing'"):
        KubeConnection.from_kubeconfig(path)


def test_missing_kubeconfig_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="pass its path or set KUBECONFIG"):
        KubeConnection.from_kubeconfig(tmp_path / "nope")


def test_unbuilt_api_server_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_KUBE_APISERVER", raising=False)
    monkeypatch.setattr(full_apiserver, "BIN_DIR", tmp_path)
    with pytest.raises(KubeError, match=r"not built .* run `bash \.ci/setup\.d/kube\.sh`"):
        full_apiserver.find_full_apiserver()
    monkeypatch.setenv("DRIFTLOOP_KUBE_APISERVER", str(tmp_path / "missing"))
    with pytest.raises(KubeError, match="is not an executable file"):
        full_apiserver.find_full_apiserver()


def test_binary_name_follows_the_module() -> None:
    name = full_apiserver.full_apiserver_binary_name()
    prefix = "driftloop-kube-apiserver-full-"
    assert name.startswith(prefix) and len(name) == len(prefix) + 12
    go_mod = (full_apiserver.FULL_APISERVER_SRC / "go.mod").read_text()
    assert "\tk8s.io/kubernetes v1.33." in go_mod
    # Every k8s.io staging module is replaced by its release cut from the same tree.
    assert "\tk8s.io/apiserver => k8s.io/apiserver v0.33." in go_mod


def test_service_account_keys_are_a_p256_pair(tmp_path: Path) -> None:
    keys = write_service_account_keys(tmp_path)
    private = serialization.load_pem_private_key(keys.signing_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(keys.public_key.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert keys.signing_key.stat().st_mode & 0o077 == 0
