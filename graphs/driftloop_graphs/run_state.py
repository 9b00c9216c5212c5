"""What ``driftloop up`` leaves in the run directory so ``down``, the control client and other parts
can find it: ``runtime.json`` (PIDs, ports, URLs) and ``control.token`` (0600, the bearer token)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
