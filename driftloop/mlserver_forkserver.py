"""A fork server ("zygote") that imports MLServer and the heavy libraries once and forks MLServers from it.

Importing ``mlserver``, ``mlflow``, ``sklearn`` and ``alibi_detect`` costs ~7 s of CPU per process; a local
runtime with three predictors would pay it three times. ``ForkServer`` starts one helper process
(``python -m driftloop.mlserver_forkserver``) that imports the runtimes' modules, then, for each
``spawn()``, forks a child that becomes a normal ``mlserver start <repository>`` (MLServer's own CLI entry
point, in-process): its own session (process group), the given environment (``MLSERVER_*`` settings), working
directory and log file. Pages imported before the fork are shared copy-on-write.

The helper forks only from its single Python thread, before any event loop exists. It reaps its children
and reports their exit codes over its stdout; it stops its children and exits when its stdin closes (the
owner exited, even by SIGKILL), and each child gets SIGTERM if the helper dies (``PR_SET_PDEATHSIG``).
A module that fails to import in the helper is reported and skipped: the child imports it itself.

>>> with ForkServer(preload=["mlserver.cli.main"], log_path=Path("zygote.log")) as zygote:  # doctest: +SKIP
...     child = zygote.spawn(["start", "/abs/repo"], env=dict(os.environ), cwd=Path("run"), log_path=log)
...     child.poll()  # None while running, else the exit code (negative: killed by that signal)
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import importlib.machinery
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from driftloop.errors import DriftloopError

# every child runs MLServer's CLI and server
DEFAULT_PRELOAD = ("mlserver.cli.main",)
# the libraries worth importing once: a runtime's imports of them (lazy ones included) are preloaded
HEAVY_LIBRARIES = ("mlserver", "mlflow", "sklearn", "alibi_detect")
# imported while loading, not named in the runtimes' code: the estimator modules an unpickled model needs
# and MLflow's sqlite stores (the local registry)
_SKLEARN_ESTIMATORS = (
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.preprocessing",
)
_MLFLOW_SQL_STORES = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)
_PRELOAD_ENV = "DRIFTLOOP_FORKSERVER_PRELOAD"  # comma-separated; not argv, which every child would show
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
_STOP_CHILDREN_S = 10.0


class ForkServerError(DriftloopError):
    """The fork server is not running or could not fork; start MLServer as a plain process instead."""


class ForkServerTimeout(ForkServerError):
    """The fork server did not answer in time (still importing, or the machine is overloaded)."""


def preload_modules(repositories: Iterable[Path], env: Mapping[str, str] | None = None) -> list[str]:
    """What the helper should import for these repositories, found without importing anything here.

    ``DEFAULT_PRELOAD``, the module of every ``implementation`` in their model-settings, and what those
    modules (and the modules of their own package they import) import from ``HEAVY_LIBRARIES``, lazy
    imports inside functions included. If that includes scikit-learn or MLflow's sklearn flavour, the
    common estimator modules too; if MLflow with a ``sqlite:`` registry (``env``), MLflow's SQL stores.
    """
    env = os.environ if env is None else env
    search_path = [*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), *sys.path]
    implementations: list[str] = []
    for repository in repositories:
        for settings_file in sorted(Path(repository).rglob("model-settings.json")):
            try:
                implementation = json.loads(settings_file.read_text()).get("implementation")
            except (OSError, ValueError):
                continue  # MLServer reports an unreadable settings file when it loads the repository
            if isinstance(implementation, str) and "." in implementation:
                implementations.append(implementation.rsplit(".", 1)[0])
    heavy: list[str] = []
    seen: set[str] = set()
    for module in implementations:
        heavy += _heavy_imports(module, search_path, seen)
    modules = [*DEFAULT_PRELOAD, *heavy]
    if any(m.split(".")[0] == "sklearn" or m.startswith("mlflow.sklearn") for m in modules):
        modules += _SKLEARN_ESTIMATORS
    registry = env.get("MLFLOW_REGISTRY_URI") or env.get("MLFLOW_TRACKING_URI") or ""
    if any(m.split(".")[0] == "mlflow" for m in modules) and registry.startswith("sqlite:"):
        modules += _MLFLOW_SQL_STORES
    return list(dict.fromkeys([*modules, *implementations]))


def _source(module: str, search_path: list[str]) -> Path | None:
    """The source file of ``module``, looked up on ``search_path`` without importing its packages."""
    locations: list[str] | None = search_path
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), locations)
        if spec is None:
            return None
        locations = list(spec.submodule_search_locations or [])
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _heavy_imports(module: str, search_path: list[str], seen: set[str]) -> list[str]:
    if module in seen:
        return []
    seen.add(module)
    source = _source(module, search_path)
    if source is None:
        return []
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return []
    package = module.split(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in HEAVY_LIBRARIES:
                found.append(name)
            elif top == package:  # the runtime's own package: follow it
                found += _heavy_imports(name, search_path, seen)
    return found


class ForkedProcess:
    """A child of the fork server, with the parts of ``subprocess.Popen`` that ``MLServerProcess`` uses."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid

    @property
    def returncode(self) -> int | None:
        return self._server.returncode(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._server.wait(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"forked mlserver {self.pid}", timeout or 0.0)
        return code


class ForkServer:
    """Client side: starts the helper, asks it to fork, and tracks its children's exit codes."""

    def __init__(
        self,
        *,
        preload: Iterable[str] = DEFAULT_PRELOAD,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        reply_timeout_s: float = 120.0,
    ) -> None:
        self.preload = list(preload)
        self.env = dict(os.environ if env is None else env)
        self.log_path = log_path
        self.reply_timeout_s = reply_timeout_s
        self.preloaded: list[str] = []
        self.preload_failed: dict[str, str] = {}
        self.preload_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self._state = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._exit_codes: dict[int, int] = {}
        self._next_id = 0
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        with self._state:
            return self._process is not None and not self._closed

    def start(self) -> ForkServer:
        if self._process is not None:
            raise ForkServerError("this ForkServer is already started")
        log: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "driftloop.mlserver_forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**self.env, _PRELOAD_ENV: ",".join(self.preload)},
                start_new_session=True,  # Ctrl-C in the owner's terminal is the owner's to handle
            )
        except OSError as exc:
            raise ForkServerError(f"cannot start the MLServer fork server: {exc}") from exc
        finally:
            if not isinstance(log, int):
                log.close()
        self._reader = threading.Thread(target=self._read, name="forkserver-reader", daemon=True)
        self._reader.start()
        return self

    def spawn(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        timeout_s: float | None = None,
    ) -> ForkedProcess:
        """Fork ``mlserver <argv>`` (waits for the helper's preload, which runs once).

        ``ForkServerTimeout`` if the helper has not answered in ``timeout_s``: it may still fork later (a
        child that ``close()`` stops); any other ``ForkServerError`` means no child was or will be forked.
        """
        with self._state:
            if self._process is None or self._closed:
                raise ForkServerError("the MLServer fork server is not running")
            request_id = self._next_id
            self._next_id += 1
        request = {"id": request_id, "argv": argv, "env": dict(env), "cwd": str(cwd), "log": str(log_path)}
        self._send(request)
        timeout_s = self.reply_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        with self._state:
            while request_id not in self._replies:
                if self._closed:
                    raise ForkServerError(f"the MLServer fork server exited; see {self.log_path}")
                if not self._state.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise ForkServerTimeout(f"no answer from the MLServer fork server in {timeout_s:.0f}s")
            reply = self._replies.pop(request_id)
        if "error" in reply:
            raise ForkServerError(f"the MLServer fork server could not fork: {reply['error']}")
        return ForkedProcess(self, int(reply["pid"]))

    def returncode(self, pid: int) -> int | None:
        with self._state:
            if pid in self._exit_codes:
                return self._exit_codes[pid]
            if not self._closed:
                return None
        # the helper is gone: its children were re-parented (and sent SIGTERM); a zombie waiting for its
        # new parent to reap it has exited too
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return None
        except psutil.NoSuchProcess:
            pass
        return -signal.SIGTERM

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self.returncode(pid)
            if code is not None:
                return code
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            with self._state:
                if pid not in self._exit_codes and not self._closed:
                    self._state.wait(timeout=0.1 if remaining is None else min(remaining, 0.1))
                elif self._closed:
                    time.sleep(0.05)

    def close(self, timeout_s: float = _STOP_CHILDREN_S + 5.0) -> None:
        """Close the helper's stdin: it stops its remaining children, reaps them and exits."""
        process = self._process
        if process is None:
            return
        with self._write_lock:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5.0)
        if self._reader is not None:
            self._reader.join(timeout=5.0)
        if process.stdout is not None:
            process.stdout.close()

    def _send(self, message: dict[str, Any]) -> None:
        assert self._process is not None and self._process.stdin is not None
        data = (json.dumps(message) + "\n").encode()
        with self._write_lock:
            try:
                self._process.stdin.write(data)
                self._process.stdin.flush()
            except (OSError, ValueError) as exc:
                raise ForkServerError(f"the MLServer fork server is not running: {exc}") from exc

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._state:
                event = message.get("event")
                if event == "preloaded":
                    self.preloaded = list(message["modules"])
                    self.preload_failed = dict(message["failed"])
                    self.preload_s = float(message["seconds"])
                elif event == "exited":
                    self._exit_codes[int(message["pid"])] = int(message["code"])
                elif "id" in message:
                    self._replies[int(message["id"])] = message
                self._state.notify_all()
        with self._state:
            self._closed = True
            self._state.notify_all()

    def __enter__(self) -> ForkServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- the helper process ------------------------------------------------------------------------------


def _preload(modules: list[str]) -> tuple[list[str], dict[str, str]]:
    import importlib

    loaded: list[str] = []
    failed: dict[str, str] = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure: the child imports the module itself
            failed[module] = f"{type(exc).__name__}: {exc}"
            print(f"forkserver: cannot preload {module}: {failed[module]}", file=sys.stderr, flush=True)
        else:
            loaded.append(module)
    return loaded, failed


def _prctl(option: int, value: int | bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no death signal, no name
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _become_mlserver(request: dict[str, Any], parent_pid: int, close_fds: list[int]) -> int:
    """In the forked child: detach, take the request's environment and log, and run ``mlserver``."""
    os.setsid()
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(_PR_SET_NAME, b"mlserver")  # what ps -o comm / top show; the command line stays the helper's
    if os.getppid() != parent_pid:  # the helper died before the death signal was armed
        return 1
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in any Python process
    for fd in close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # as a fresh process would (``random`` reseeds itself after a fork)
        numpy.random.seed()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for entry in reversed(request["env"].get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    sys.argv = ["mlserver", *request["argv"]]
    from mlserver.cli.main import main

    try:
        main()  # click exits through SystemExit
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _write(out_fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(out_fd, data) :]


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _reap(out_fd: int | None, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        if out_fd is not None:
            with contextlib.suppress(OSError):
                _write(out_fd, {"event": "exited", "pid": pid, "code": _exit_code(status)})


def _stop_children(children: set[int]) -> None:
    for sig, wait_s in ((signal.SIGTERM, _STOP_CHILDREN_S), (signal.SIGKILL, 5.0)):
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while children and time.monotonic() < deadline:
            _reap(None, children)
            time.sleep(0.05)
        if not children:
            return


def serve(modules: list[str]) -> int:
    """The helper's main loop: preload, then fork one MLServer per request line on stdin."""
    out_fd = os.dup(1)  # the control channel; stray prints of imported libraries go to stderr instead
    os.dup2(2, 1)
    os.set_inheritable(out_fd, False)
    stopping = False

    def request_stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    loaded, failed = _preload(modules)
    seconds = time.monotonic() - started
    _write(out_fd, {"event": "preloaded", "modules": loaded, "failed": failed, "seconds": seconds})
    if threading.active_count() > 1:  # a Python thread started by an import would be copied half-way
        print(f"forkserver: threads after preload: {threading.enumerate()}", file=sys.stderr, flush=True)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: set[int] = set()
    buffer = b""
    parent_pid = os.getpid()
    try:
        while not stopping:
            for key, _ in selector.select(timeout=1.0):
                if key.fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(wake_r, 4096):
                            pass
                    continue
                chunk = os.read(0, 65536)
                if not chunk:  # the owner closed the channel or died
                    stopping = True
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    sys.stderr.flush()  # nothing buffered here may be written again by the child
                    try:
                        pid = os.fork()
                    except OSError as exc:
                        with contextlib.suppress(OSError):
                            _write(out_fd, {"id": request["id"], "error": str(exc)})
                        continue
                    if pid == 0:
                        code = 1
                        try:
                            inherited = [out_fd, wake_r, wake_w, selector.fileno()]
                            code = _become_mlserver(request, parent_pid, inherited)
                        finally:
                            with contextlib.suppress(Exception):
                                sys.stdout.flush()
                                sys.stderr.flush()
                            os._exit(code)
                    children.add(pid)
                    try:
                        _write(out_fd, {"id": request["id"], "pid": pid})
                    except OSError:  # the owner is gone
                        stopping = True
            _reap(out_fd, children)
    finally:
        _stop_children(children)
    return 0


if __name__ == "__main__":
    sys.exit(serve([m for m in os.environ.pop(_PRELOAD_ENV, "").split(",") if m]))
