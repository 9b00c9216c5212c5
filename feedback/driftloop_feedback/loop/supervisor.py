"""The supervisor: starts each worker as a child process, restarts one that exits with a backoff, and
stops them all, by PID, when asked.

Time is injected (``clock``) and so is the way a child is started (``spawn``): the unit tests move a
fake clock over fake children; the CLI uses ``time.monotonic`` and real processes.

A child that exits while the loop runs is restarted after ``backoff_initial_s``, doubling with each
exit in a row up to ``backoff_max_s``; a child that ran ``stable_after_s`` before it exited starts the
series again. Stopping sends SIGTERM to every child's PID (each worker stops after its own final
checkpoint), waits up to ``stop_timeout_s``, then sends SIGKILL to what is left, process group included
(a child's own children, e.g. the runtime's MLServers, started in the child's session).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from driftloop_feedback.loop.workers import WorkerSpec

WorkerStatus = Literal["running", "backoff", "stopped"]


class SupervisorSettings(BaseModel):
    backoff_initial_s: float = Field(default=1.0, gt=0, description="wait before the first restart")
    backoff_max_s: float = Field(default=60.0, gt=0, description="longest wait between restarts")
    stable_after_s: float = Field(default=30.0, gt=0, description="a run this long resets the backoff")
    stop_timeout_s: float = Field(default=30.0, gt=0, description="SIGTERM, then SIGKILL after this")


class Child(Protocol):
    """What the supervisor needs of a started process (``subprocess.Popen`` has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


Spawn = Callable[[WorkerSpec, Path], Child]
Signal = Callable[[int, int, bool], None]  # (pid, signal, whole process group)


def spawn_process(spec: WorkerSpec, log_path: Path, env: Mapping[str, str] | None = None) -> Child:
    """``python -m driftloop <args>`` in its own session, stdout and stderr appended to ``log_path``."""
    child_env = {**os.environ, **(env or {}), **spec.env, "PYTHONUNBUFFERED": "1"}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop", *spec.args],
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops the children
        )


def send_signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)  # start_new_session: the child leads its own group, pgid == pid
        else:
            os.kill(pid, sig)


@dataclass
class Worker:
    """One worker's supervised life."""

    spec: WorkerSpec
    log_path: Path
    child: Child | None = None
    started_at: float | None = None  # clock time of the current (or last) start
    restarts: int = 0
    failures_in_row: int = 0
    restart_at: float | None = None
    last_exit: int | None = None
    metrics_url: str | None = None
    log_offset: int = 0  # where the current start's output begins in the log
    history: list[tuple[int, int]] = field(default_factory=list)  # (pid, exit code) of exits seen

    @property
    def status(self) -> WorkerStatus:
        if self.child is not None:
            return "running"
        return "backoff" if self.restart_at is not None else "stopped"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child is not None else None


class Supervisor:
    def __init__(
        self,
        specs: list[WorkerSpec],
        log_dir: Path,
        settings: SupervisorSettings | None = None,
        *,
        spawn: Spawn,
        signal_child: Signal = send_signal,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_change: Callable[[Supervisor], None] | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings or SupervisorSettings()
        self.workers = [Worker(spec, log_dir / f"{spec.name}.log") for spec in specs]
        self._spawn = spawn
        self._signal = signal_child
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self._say = say
        self.stopping = False

    def start(self) -> None:
        for worker in self.workers:
            self._start(worker)
        self._changed()

    def tick(self) -> None:
        """Notice exits, restart what is due, pick up metrics URLs from the logs."""
        changed = False
        now = self._clock()
        for worker in self.workers:
            if worker.child is not None:
                code = worker.child.poll()
                if code is not None and not self.stopping:
                    self._exited(worker, code, now)
                    changed = True
            elif worker.restart_at is not None and now >= worker.restart_at and not self.stopping:
                worker.restarts += 1
                self._start(worker)
                changed = True
            if worker.child is not None and worker.metrics_url is None:
                worker.metrics_url = worker.spec.metrics_url(_read(worker.log_path, worker.log_offset))
                changed = changed or worker.metrics_url is not None
        if changed:
            self._changed()

    def run(self, should_stop: Callable[[], bool], interval_s: float = 0.2) -> None:
        self.start()
        try:
            while not should_stop():
                self.tick()
                self._sleep(interval_s)
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM to every running child, by PID; SIGKILL (process group) after ``stop_timeout_s``."""
        self.stopping = True
        running = [w for w in self.workers if w.child is not None]
        for worker in reversed(running):  # downstream first
            assert worker.child is not None
            self._say(f"stopping {worker.spec.name} (pid {worker.child.pid})")
            self._signal(worker.child.pid, signal.SIGTERM, False)
        deadline = self._clock() + self.settings.stop_timeout_s
        while any(w.child.poll() is None for w in running if w.child is not None):
            if self._clock() >= deadline:
                break
            self._sleep(0.1)
        for worker in running:
            assert worker.child is not None
            code = worker.child.poll()
            if code is None:
                self._say(f"{worker.spec.name} (pid {worker.child.pid}) still running: SIGKILL")
                self._signal(worker.child.pid, signal.SIGKILL, True)
                code = -signal.SIGKILL
            else:  # its own children (if any) go with it: nothing of the loop is left running
                self._signal(worker.child.pid, signal.SIGKILL, True)
            worker.history.append((worker.child.pid, code))
            worker.last_exit = code
            worker.child = None
        for worker in self.workers:
            worker.restart_at = None
        self._changed()

    def backoff_s(self, failures_in_row: int) -> float:
        s = self.settings
        return float(min(s.backoff_max_s, s.backoff_initial_s * 2 ** max(0, failures_in_row - 1)))

    def _start(self, worker: Worker) -> None:
        worker.log_path.parent.mkdir(parents=True, exist_ok=True)
        with worker.log_path.open("a") as log:
            log.write(f"--- driftloop loop: starting {worker.spec.name} (start #{worker.restarts + 1})\n")
            worker.log_offset = log.tell()
        worker.child = self._spawn(worker.spec, worker.log_path)
        worker.started_at = self._clock()
        worker.restart_at = None
        worker.metrics_url = None
        self._say(f"started {worker.spec.name} (pid {worker.child.pid}), log {worker.log_path}")

    def _exited(self, worker: Worker, code: int, now: float) -> None:
        assert worker.child is not None and worker.started_at is not None
        ran_s = now - worker.started_at
        worker.history.append((worker.child.pid, code))
        worker.last_exit = code
        worker.child = None
        if ran_s >= self.settings.stable_after_s:
            worker.failures_in_row = 0
        worker.failures_in_row += 1
        wait = self.backoff_s(worker.failures_in_row)
        worker.restart_at = now + wait
        self._say(
            f"{worker.spec.name} exited with {code} after {ran_s:.1f} s: restart in {wait:g} s "
            f"(see {worker.log_path})"
        )

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self)


def _read(path: Path, offset: int, limit: int = 256 * 1024) -> str:
    """What the current start wrote, its first ``limit`` bytes (a URL is printed at start)."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read(limit).decode(errors="replace")
    except FileNotFoundError:
        return ""
