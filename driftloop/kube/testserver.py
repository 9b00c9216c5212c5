"""What a local Kubernetes API server for tests is made of, without Docker or a cluster: etcd on free
127.0.0.1 ports with its data in a temp dir (on tmpfs when there is one), a throw-away PKI and an admin
kubeconfig, the API server process, CRD installation, and stopping both processes by process group.

The server itself is :class:`driftloop.kube.full_apiserver.FullKubeAPIServer` (upstream kube-apiserver
v1.33); :class:`LocalKubeAPIServer` is its base and leaves the binary and its flags to it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from driftloop.kube.certs import CertPaths, write_test_pki
from driftloop.kube.connection import KubeConnection, write_kubeconfig
from driftloop.kube.errors import KubeError, raise_for_status

BIN_DIR = Path(os.environ.get("DRIFTLOOP_BIN_DIR", Path.home() / ".cache" / "driftloop" / "bin"))
SETUP_HINT = "run `bash .ci/setup.d/kube.sh` (or `make setup`) to install it"


def find_etcd() -> Path:
    """``$DRIFTLOOP_ETCD``, else ``etcd`` on PATH."""
    found = os.environ.get("DRIFTLOOP_ETCD") or shutil.which("etcd")
    if not found:
        raise KubeError(f"etcd not found on PATH (Debian package etcd-server): {SETUP_HINT}")
    return Path(found)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    """A child in its own session (process group), logging to a file; stopped by its group id."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        pgid = self.popen.pid  # start_new_session=True: the child leads its own group
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


class LocalKubeAPIServer:
    """etcd + an API server on 127.0.0.1 with a fresh PKI and kubeconfig, ``crds`` installed and
    Established. A subclass names the binary (``_find_apiserver``) and its flags (``_apiserver_argv``)."""

    def __init__(
        self,
        crds: Sequence[Mapping[str, Any]] | None = None,
        start_timeout_s: float = 90.0,
        keep_dir: bool = False,
    ) -> None:
        self.crds = tuple(crds or ())
        self.start_timeout_s = start_timeout_s
        self.keep_dir = keep_dir
        self.dir: Path | None = None
        self.url = ""
        self.kubeconfig = Path()
        self.certs: CertPaths | None = None
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> LocalKubeAPIServer:
        apiserver_bin, etcd_bin = self._find_apiserver(), find_etcd()
        # etcd fsyncs every write: keep its data on tmpfs when there is one.
        shm = Path("/dev/shm")
        parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        self.dir = Path(tempfile.mkdtemp(prefix="driftloop-kube-", dir=parent))
        try:
            self._with_fresh_ports(lambda: self._start_etcd(etcd_bin))
            self._with_fresh_ports(lambda: self._start_apiserver(apiserver_bin))
            for crd in self.crds:
                self.install_crd(crd)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in (self._apiserver, self._etcd):
            if proc is not None:
                proc.stop()
        self._apiserver = self._etcd = None
        if self.dir is not None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> LocalKubeAPIServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pids(self) -> list[int]:
        return [p.popen.pid for p in (self._etcd, self._apiserver) if p is not None and p.alive()]

    def connection(self) -> KubeConnection:
        return KubeConnection.from_kubeconfig(self.kubeconfig)

    def kubectl_env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        """Environment for running ``kubectl`` against this server: ``KUBECONFIG`` (``kubeconfig``, default
        the admin's), and ``KUBECACHEDIR`` in the server's temp dir so kubectl's discovery/HTTP caches go
        with it instead of into ``~/.kube``."""
        assert self.dir is not None, "the server is not running"
        return {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.kubeconfig),
            "KUBECACHEDIR": str(self.dir / "kubectl-cache"),
        }

    # -- CRDs ------------------------------------------------------------------------------------------
    def install_crd(self, crd: Mapping[str, Any], timeout_s: float = 60.0) -> str:
        """Server-side apply ``crd`` and wait until it is Established; returns its name."""
        name = crd["metadata"]["name"]
        url = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        with self.connection().http_client(timeout_s=timeout_s) as http:
            response = http.patch(
                url,
                params={"fieldManager": "driftloop-testserver", "force": "true"},
                content=json.dumps(crd).encode(),  # JSON is YAML
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            raise_for_status(response)
            deadline = time.monotonic() + timeout_s
            while True:
                response = http.get(url)
                raise_for_status(response)
                conditions = {
                    c["type"]: c["status"]
                    for c in (response.json().get("status") or {}).get("conditions") or []
                }
                if conditions.get("Established") == "True":
                    return str(name)
                if time.monotonic() > deadline:
                    raise KubeError(f"CRD {name} not Established after {timeout_s:.0f} s: {conditions}")
                time.sleep(0.1)

    # -- internals -------------------------------------------------------------------------------------
    @staticmethod
    def _with_fresh_ports(start: Callable[[], None], attempts: int = 3) -> None:
        """Run ``start``; if another process took a port between our probe and the bind, pick new ones."""
        for attempt in range(attempts):
            try:
                start()
                return
            except KubeError as exc:
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    raise

    def _start_etcd(self, etcd_bin: Path) -> None:
        assert self.dir is not None
        if self._etcd is not None:
            self._etcd.stop()
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        self.etcd_url = client_url
        self._etcd = _Process(
            "etcd",
            [
                str(etcd_bin),
                "--name=driftloop-test",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=driftloop-test={peer_url}",
                "--initial-cluster-state=new",
                "--listen-metrics-urls=",
                "--log-level=warn",
                "--logger=zap",
            ],
            self.dir / "etcd.log",
        )
        self._wait_healthy(self._etcd, f"{client_url}/health", None, lambda r: '"true"' in r.text)

    def _find_apiserver(self) -> Path:
        raise NotImplementedError

    def _start_apiserver(self, apiserver_bin: Path) -> None:
        assert self.dir is not None
        if self._apiserver is not None:
            self._apiserver.stop()
        self.certs = write_test_pki(self.dir / "pki")
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        self.kubeconfig = write_kubeconfig(
            self.dir / "kubeconfig",
            self.url,
            self.certs.ca_cert,
            self.certs.client_cert,
            self.certs.client_key,
        )
        self._apiserver = _Process(
            apiserver_bin.name, self._apiserver_argv(apiserver_bin, port), self.dir / "apiserver.log"
        )
        self._wait_healthy(
            self._apiserver, f"{self.url}/healthz", self.connection(), lambda r: r.text == "ok"
        )

    def _apiserver_argv(self, apiserver_bin: Path, port: int) -> list[str]:
        raise NotImplementedError

    def _wait_healthy(
        self,
        proc: _Process,
        url: str,
        connection: KubeConnection | None,
        check: Callable[[httpx.Response], bool],
    ) -> None:
        client = connection.http_client(timeout_s=2.0) if connection else httpx.Client(timeout=2.0)
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer yet"
        with client:
            while time.monotonic() < deadline:
                if not proc.alive():
                    raise KubeError(
                        f"{proc.name} exited with code {proc.popen.returncode} while starting; "
                        f"log {proc.log}:\n{proc.tail()}"
                    )
                try:
                    response = client.get(url)
                    if response.status_code == 200 and check(response):
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.2)
        raise KubeError(
            f"{proc.name} not healthy at {url} after {self.start_timeout_s:.0f} s (last: {last}); "
            f"log {proc.log}:\n{proc.tail()}"
        )
