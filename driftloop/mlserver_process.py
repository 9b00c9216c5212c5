"""Run ``mlserver start`` on a model repository as a real process bound to 127.0.0.1.

Ports (HTTP, gRPC, metrics) are free ports picked at start; settings go in as ``MLSERVER_*`` environment
variables (the keys of a ``settings.json``), so nothing is written into the repository and nothing binds
0.0.0.0. ``debug`` is off: a model's exception is logged, and its traceback never becomes a client's 500
body. The process runs in its own session (process group) and is stopped by that group, workers included.
It is tied to the process that started it (``driftloop.mlserver_child``): it stops itself when that
process dies, even by SIGKILL. ``restart()`` starts an exited server again on the same ports.

With ``forkserver=`` (a started ``driftloop.mlserver_forkserver.ForkServer``) the process is forked from
that server, which has MLServer and the runtimes' libraries imported already, instead of executing
``mlserver start``; it behaves the same (settings, log, own process group). If the fork server cannot fork,
a plain ``mlserver start`` process is started instead.

>>> with MLServerProcess(Path("models"), env={"DRIFTLOOP_HOME": "/abs/state"}) as server:  # doctest: +SKIP
...     httpx.get(f"{server.url}/v2/health/ready")
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx
import psutil

from driftloop.errors import DriftloopError
from driftloop.mlserver_forkserver import ForkedProcess, ForkServer, ForkServerError, ForkServerTimeout
from driftloop.settings import StateSettings

HOST = "127.0.0.1"
_log = logging.getLogger(__name__)
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception): | ERROR - ")
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception): ")  # a traceback's last line


_PORT_ATTEMPTS = 3  # starts on fresh ports when MLServer could not bind one it was given


class MLServerStartError(DriftloopError):
    """MLServer did not become ready; the message holds the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _mlserver_executable() -> str:
    beside = Path(sys.executable).parent / "mlserver"
    if beside.exists():
        return str(beside)
    raise MLServerStartError(f"no `mlserver` next to {sys.executable}: run `make setup` (installs MLServer)")


class MLServerProcess:
    """One MLServer process serving ``repository``; ``start()``, ``url``, ``stop()`` or a ``with`` block."""

    def __init__(
        self,
        repository: Path,
        *,
        env: Mapping[str, str] | None = None,
        parallel_workers: int = 0,
        run_dir: Path | None = None,
        name: str = "mlserver",
        startup_timeout_s: float = 120.0,
        forkserver: ForkServer | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.parallel_workers = parallel_workers
        self.name = name
        self.startup_timeout_s = startup_timeout_s
        self._extra_env = dict(env or {})
        self._run_dir = run_dir
        self.forkserver = forkserver
        self.forked = False
        self._process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._lock = threading.Lock()  # ``stop`` and a ``restart`` in another thread
        self._stopped = False  # by ``stop()``: a ``restart()`` must not bring it back
        self._launch_dir: Path | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.log_path: Path | None = None

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        """Whether the process is alive (asking reaps it if it has exited: it is never left a zombie)."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code of the process that exited (negative: killed by that signal), else None."""
        return self._process.poll() if self._process is not None else None

    # -- lifecycle -----------------------------------------------------------------------------------
    def _check_repository(self) -> None:
        if not self.repository.is_dir():
            raise MLServerStartError(f"model repository {self.repository} is not a folder")
        settings_file = self.repository / "settings.json"
        if settings_file.exists():
            raise MLServerStartError(
                f"{settings_file} exists: it would override the host/ports driftloop sets (127.0.0.1, "
                "free ports); remove it and pass settings through the environment"
            )

    def start(self) -> MLServerProcess:
        if self._process is not None:
            raise MLServerStartError("this MLServerProcess is already started")
        self._check_repository()
        run_dir = self._run_dir or StateSettings().run_dir() / f"{self.name}-{os.getpid()}-{free_port()}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self._stopped = False
        self._launch_dir = run_dir
        for attempt in range(1, _PORT_ATTEMPTS):
            try:
                return self._start_on_free_ports(run_dir)
            except MLServerStartError:
                if not self._lost_a_port():
                    raise
                _log.warning(
                    "%s: a port picked for MLServer was taken before it could bind it; starting again on "
                    "other ports (attempt %d of %d)",
                    self.name,
                    attempt + 1,
                    _PORT_ATTEMPTS,
                )
        return self._start_on_free_ports(run_dir)  # the last attempt: its error is raised as it is

    def _start_on_free_ports(self, run_dir: Path) -> MLServerProcess:
        """One start: free ports picked now, then the process, then readiness (stopped if not ready)."""
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        return self._launch(run_dir)

    def restart(self) -> MLServerProcess:
        """Start the server again, on the same ports (callers keep its URL), after its process exited.

        The exited process's log is kept as ``mlserver.previous.log``; whatever is left of its process
        group (workers) is killed first. ``MLServerStartError`` if it does not become ready (call again
        later), if it is still running, or if it was stopped (a stopped server is never brought back).
        """
        with self._lock:
            old = self._process
            if self._stopped or old is None or self._launch_dir is None:
                raise MLServerStartError(f"{self.name} was stopped (or never started): start() it")
            if old.poll() is None:
                raise MLServerStartError(f"{self.name} (pid {old.pid}) is still running")
            self._process = None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(old.pid, signal.SIGKILL)  # workers of the dead leader
        if self.log_path is not None and self.log_path.exists():
            os.replace(self.log_path, self.log_path.with_name("mlserver.previous.log"))
        return self._launch(self._launch_dir)

    def _launch(self, run_dir: Path) -> MLServerProcess:
        """Start the process on the current ports and wait until ready (stopped if not ready)."""
        env = {
            **os.environ,
            **self._extra_env,
            "MLSERVER_HOST": HOST,
            # MLServer's default (debug=True) answers a model's exception with its traceback as the 500
            # body; clients get Starlette's plain "Internal Server Error", the traceback stays in the log
            "MLSERVER_DEBUG": "false",
            "MLSERVER_HTTP_PORT": str(self.http_port),
            "MLSERVER_GRPC_PORT": str(self.grpc_port),
            "MLSERVER_METRICS_PORT": str(self.metrics_port),
            "MLSERVER_PARALLEL_WORKERS": str(self.parallel_workers),
            "MLSERVER_METRICS_DIR": str(run_dir / "metrics"),
            "MLSERVER_ENVIRONMENTS_DIR": str(run_dir / "envs"),
        }
        self.log_path = run_dir / "mlserver.log"
        with self._lock:
            if self._stopped:
                raise MLServerStartError(f"{self.name} was stopped while starting")
            self._process = self._fork(env, run_dir) or self._exec(env, run_dir)
        (run_dir / "mlserver.json").write_text(
            json.dumps(
                {
                    "pid": self._process.pid,
                    "http": self.http_port,
                    "grpc": self.grpc_port,
                    "metrics": self.metrics_port,
                    "repository": str(self.repository),
                }
            )
        )
        try:
            self._wait_ready()
        except BaseException:
            self._kill(self._take_process())
            raise
        return self

    def _fork(self, env: dict[str, str], run_dir: Path) -> ForkedProcess | None:
        if self.forkserver is None:
            return None
        assert self.log_path is not None
        if not self.forkserver.alive:
            _log.warning("the MLServer fork server is not running; starting `mlserver start` as a process")
            return None
        try:
            process = self.forkserver.spawn(
                ["start", str(self.repository)],
                env=env,
                cwd=run_dir,
                log_path=self.log_path,
                timeout_s=self.startup_timeout_s,
            )
        except ForkServerTimeout as exc:  # it may still fork this server: not a case for a second one
            raise MLServerStartError(f"{exc}; its log: {self.forkserver.log_path}") from None
        except ForkServerError as exc:
            _log.warning("%s; starting `mlserver start` as a process instead", exc)
            return None
        self.forked = True
        return process

    def _exec(self, env: dict[str, str], run_dir: Path) -> subprocess.Popen[bytes]:
        """``mlserver start`` through ``driftloop.mlserver_child``, which stops it when this process dies."""
        assert self.log_path is not None
        _mlserver_executable()  # MLServer is installed beside this interpreter, or say how to install it
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "driftloop.mlserver_child",
                    str(os.getpid()),
                    "start",
                    str(self.repository),
                ],
                cwd=run_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise MLServerStartError(
                        f"mlserver exited with code {self._process.returncode} while starting; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    if self._all_models_ready(client):
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise MLServerStartError(
            f"mlserver not ready after {self.startup_timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}"
        )

    def _lost_a_port(self) -> bool:
        """Whether the last start failed because one of its ports was taken (between ``free_port``
        closing its probe socket and MLServer binding, any other socket may get that port)."""
        if self.log_path is None or not self.log_path.exists():
            return False
        return "address already in use" in self.log_path.read_text(errors="replace").lower()

    def model_names(self) -> list[str]:
        """Names of the models in the repository (``name`` in each model-settings.json, else the folder)."""
        names = []
        for settings_file in sorted(self.repository.rglob("model-settings.json")):
            try:
                name = json.loads(settings_file.read_text()).get("name")
            except (OSError, ValueError) as exc:
                raise MLServerStartError(f"cannot read {settings_file}: {exc}") from None
            names.append(str(name or settings_file.parent.name))
        return names

    def _all_models_ready(self, client: httpx.Client) -> bool:
        # /v2/health/ready answers 200 before MLServer has registered the models it is still loading,
        # so readiness is: the server is ready AND every model of the repository is.
        if client.get(f"{self.url}/v2/health/ready").status_code != 200:
            return False
        return all(
            client.get(f"{self.url}/v2/models/{name}/ready").status_code == 200 for name in self.model_names()
        )

    def log_tail(self, lines: int = 40) -> str:
        """The errors MLServer logged (what failed to load and why), else the end of its log."""
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in text if _ERROR_LINE.search(line)]
        unique = list(dict.fromkeys(errors))[-8:]
        return "\n".join(unique) if unique else "\n".join(text[-lines:])

    def log_size(self) -> int:
        """The log's size now: pass it to ``last_error`` to look only at what is logged after."""
        try:
            return self.log_path.stat().st_size if self.log_path is not None else 0
        except OSError:
            return 0

    def last_error(self, since: int = 0) -> str | None:
        """The last exception MLServer logged after byte ``since``, as one line (``Type: message``,
        at most 300 characters): the cause of a failed load, without the traceback above it."""
        if self.log_path is None:
            return None
        try:
            with self.log_path.open("rb") as log:
                if since <= log.seek(0, os.SEEK_END):
                    log.seek(since)
                else:  # the log was replaced (a restart) since: read it all
                    log.seek(0)
                text = log.read().decode(errors="replace")
        except OSError:
            return None
        found = [line.strip() for line in text.splitlines() if _EXCEPTION_LINE.match(line)]
        if not found:
            return None
        line = found[-1]
        return line if len(line) <= 300 else line[:297] + "..."

    def rss_bytes(self) -> int:
        """Resident memory of the MLServer process and all its children (parallel workers)."""
        if self._process is None or self._process.poll() is not None:
            return 0
        root = psutil.Process(self._process.pid)
        total = 0
        for proc in [root, *root.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout_s``; a ``restart()``
        running in another thread, or called later, does not start it again."""
        with self._lock:
            self._stopped = True
        self._kill(self._take_process(), timeout_s)

    def _take_process(self) -> subprocess.Popen[bytes] | ForkedProcess | None:
        with self._lock:
            process, self._process = self._process, None
        return process

    @staticmethod
    def _kill(process: subprocess.Popen[bytes] | ForkedProcess | None, timeout_s: float = 15.0) -> None:
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                # the leader is gone; make sure no worker of the group survives it
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break
        if process.poll() is None:
            process.wait(timeout=5.0)

    def __enter__(self) -> MLServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
