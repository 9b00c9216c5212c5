"""The loop's status file, ``$DRIFTLOOP_HOME/run/loop/loop.json``: written by ``driftloop loop run`` at
every change (atomically: temp file, rename), read by ``driftloop loop status`` and ``stop``."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from driftloop.settings import StateSettings
from driftloop_feedback.loop.supervisor import Supervisor

STATUS_FILE = "loop.json"
TOKEN_FILE = "feedback.token"


def loop_dir(settings: StateSettings | None = None) -> Path:
    path = (settings or StateSettings()).run_dir() / "loop"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class WorkerRecord:
    name: str
    status: str
    pid: int | None
    started_at: float | None  # unix seconds
    restarts: int
    last_exit: int | None
    metrics_url: str | None
    log: str
    command: list[str]


@dataclass
class LoopStatus:
    pid: int  # the supervisor's
    started_at: float
    home: str
    feedback_token_file: str | None
    workers: list[WorkerRecord] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        supervisor: Supervisor,
        *,
        pid: int,
        started_at: float,
        home: Path,
        token_file: Path | None,
        wall_now: float,
        mono_now: float,
    ) -> LoopStatus:
        records = []
        for w in supervisor.workers:
            started = None if w.started_at is None else wall_now - (mono_now - w.started_at)
            records.append(
                WorkerRecord(
                    name=w.spec.name,
                    status=w.status,
                    pid=w.pid,
                    started_at=started,
                    restarts=w.restarts,
                    last_exit=w.last_exit,
                    metrics_url=w.metrics_url,
                    log=str(w.log_path),
                    command=["driftloop", *w.spec.args],
                )
            )
        return cls(pid, started_at, str(home), str(token_file) if token_file else None, records)

    def write(self, directory: Path) -> None:
        tmp = directory / f".{STATUS_FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, directory / STATUS_FILE)

    @classmethod
    def read(cls, directory: Path) -> LoopStatus | None:
        try:
            raw: dict[str, Any] = json.loads((directory / STATUS_FILE).read_text())
        except FileNotFoundError:
            return None
        workers = [WorkerRecord(**w) for w in raw.pop("workers", [])]
        return cls(**raw, workers=workers)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
