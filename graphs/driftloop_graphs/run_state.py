"""What ``driftloop up`` leaves in the run directory so ``down``, the control client and other parts
can find it: ``runtime.json`` (PIDs, ports, URLs, and every child process with its start time) and
``control.token`` (0600, the bearer token).

A child process is recorded as ``{"pid", "create_time", "role"}``; ``stop_recorded`` stops those still
alive, after checking that the PID still belongs to the process recorded (same start time), so a PID the
system has since given to another process is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from driftloop.settings import StateSettings
from driftloop_graphs.errors import GraphError

STATE_FILE = "runtime.json"
TOKEN_FILE = "control.token"


def runtime_dir(settings: StateSettings | None = None) -> Path:
    path = (settings or StateSettings()).run_dir() / "local-runtime"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunState:
    pid: int
    port: int
    control_port: int
    host: str
    control_host: str
    manifest: str
    ready_s: float
    deployments: list[dict[str, str]] = field(default_factory=list)
    mlserver_pids: list[int] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)  # see ``child_record``

    @property
    def control_url(self) -> str:
        return f"http://{self.control_host}:{self.control_port}"

    def write(self, directory: Path, token: str) -> None:
        token_path = directory / TOKEN_FILE
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token)
        os.chmod(token_path, 0o600)
        tmp = directory / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, directory / STATE_FILE)

    @classmethod
    def read(cls, directory: Path) -> RunState | None:
        path = directory / STATE_FILE
        if not path.exists():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise GraphError(f"{path} is unreadable ({exc}); delete it if no runtime is running") from exc

    @staticmethod
    def token(directory: Path) -> str:
        path = directory / TOKEN_FILE
        if not path.exists():
            raise GraphError(f"{path} not found: is `driftloop up` running with this DRIFTLOOP_HOME?")
        return path.read_text().strip()

    @staticmethod
    def clear(directory: Path) -> None:
        for name in (STATE_FILE, TOKEN_FILE):
            (directory / name).unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_record(pid: int, role: str) -> dict[str, Any] | None:
    """How ``runtime.json`` records a child process (None if it is already gone)."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time(), "role": role}
    except psutil.Error:
        return None


def _recorded_process(record: dict[str, Any]) -> psutil.Process | None:
    """The live process ``record`` describes, or None (gone, a zombie, or its PID now reused)."""
    try:
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["create_time"])) > 0.05:
            return None  # another process got the PID since
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None
    return process


def stop_recorded(records: list[dict[str, Any]], timeout_s: float = 15.0) -> list[int]:
    """SIGTERM the process group of each recorded child still alive (each leads its own group), then
    SIGKILL the groups left after ``timeout_s``. Returns the PIDs it signalled."""
    alive = [p for p in (_recorded_process(r) for r in records) if p is not None]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(process.pid) == process.pid:  # its group: workers too
                    os.killpg(process.pid, sig)
                else:
                    os.kill(process.pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(_running(p) for p in alive):
            time.sleep(0.1)
        if not any(_running(p) for p in alive):
            break
    return [p.pid for p in alive]


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
