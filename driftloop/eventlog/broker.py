"""A real, single-node Apache Kafka broker (KRaft) for development, tests, the benchmark and demos.

The jars come from Maven Central through ``.ci/setup.d/kafka.sh`` (cached under
``~/.cache/driftloop/kafka-jars/<hash of kafka-broker-pom.xml>``). ``LocalKafkaBroker`` formats KRaft
storage in a directory, listens on 127.0.0.1 (free ports unless given), waits for ``Kafka Server
started`` and stops the JVM by PID. ``stop()`` then ``start()`` restarts it on the same storage and ports.

>>> with LocalKafkaBroker() as broker:  # doctest: +SKIP
...     print(broker.bootstrap_servers)
127.0.0.1:40123
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from driftloop.eventlog.base import EventLogError

# The broker's Maven dependency list ships inside the package (installed code never reads the source tree).
POM = Path(__file__).with_name("kafka-broker-pom.xml")
READY_LINE = "Kafka Server started"
_DETACHED: list[subprocess.Popen[bytes]] = []


class BrokerError(EventLogError):
    """The local Kafka broker could not be set up, started or stopped."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cache_dir() -> Path:
    override = os.environ.get("DRIFTLOOP_KAFKA_JARS")
    if override:
        return Path(override)
    key = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "driftloop" / "kafka-jars" / key


def fetch_jars() -> Path:
    """Fetch the broker jars with Maven into the cache (once per pom; Maven caches in ~/.m2) and return
    their directory. Needs Java 17+ and Maven."""
    path = _cache_dir()
    if (path / ".complete").is_file():
        return path
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        raise BrokerError(
            f"the Kafka broker needs Java 17+ and Maven; missing: {', '.join(missing)} "
            "(e.g. apt-get install openjdk-17-jre-headless maven)"
        )
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    result = subprocess.run(command, check=False)
    if result.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        shutil.rmtree(tmp, ignore_errors=True)
        raise BrokerError(
            f"fetching the Kafka broker jars with Maven failed (exit {result.returncode}); "
            f"check {POM} and your Maven settings"
        )
    (tmp / ".complete").touch()
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def jars_dir() -> Path:
    """The broker classpath directory; raises with the set-up command when it is not there yet."""
    path = _cache_dir()
    if not (path / ".complete").is_file() and not any(path.glob("kafka_2.13-*.jar")):
        raise BrokerError(
            f"Kafka broker jars not found in {path}; run `driftloop kafka start` (fetches them) or "
            "`make setup`, which needs Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven)"
        )
    return path


_LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.state.change.logger=WARN
"""


class LocalKafkaBroker:
    """One KRaft broker+controller on 127.0.0.1. ``workdir`` keeps config, data and ``server.log``."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        message_max_bytes: int = 1048588,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="driftloop-kafka-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.message_max_bytes = message_max_bytes
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java not found; install Java 17+ (apt-get install openjdk-17-jre-headless)")
        return [
            java,
            f"-Xmx{self.heap}",
            "-Xms64m",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            "-cp",
            f"{jars_dir()}/*",
            *args,
        ]

    def _write_config(self) -> Path:
        props = self.workdir / "server.properties"
        cport = self.controller_port
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{cport}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=true",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "default.replication.factor=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "group.min.session.timeout.ms=500",
                    f"message.max.bytes={self.message_max_bytes}",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "log.retention.hours=24",
                    "",
                ]
            )
        )
        (self.workdir / "log4j.properties").write_text(_LOG4J.format(log=self.log_path))
        return props

    def _format_storage(self, props: Path) -> None:
        if (self.workdir / "data" / "meta.properties").is_file():
            return  # already formatted: restart on the same storage
        cluster_id = self._run("kafka.tools.StorageTool", "random-uuid").strip().splitlines()[-1]
        self._run("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props))

    def _run(self, *args: str) -> str:
        result = subprocess.run(self._java(*args), capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise BrokerError(f"`{' '.join(args)}` failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    def start(self) -> LocalKafkaBroker:
        if self._process is not None and self._process.poll() is None:
            return self
        props = self._write_config()
        self._format_storage(props)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.workdir / "stdout.log", "ab") as out:
            self._process = subprocess.Popen(
                self._java("kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(offset)
        return self

    def _wait_ready(self, offset: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.log_path.exists():
                with open(self.log_path, "rb") as log:
                    log.seek(offset)
                    if READY_LINE.encode() in log.read():
                        return
            if self._process.poll() is not None:
                raise BrokerError(f"Kafka broker exited with {self._process.returncode}:\n{self._tail()}")
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"Kafka broker not ready after {self.start_timeout_s:.0f} s:\n{self._tail()}")

    def _tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.log_path, self.workdir / "stdout.log"):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no broker log written)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the broker by PID (SIGTERM, then SIGKILL of its process group after ``timeout_s``)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        except ProcessLookupError:
            pass

    def detach(self) -> None:
        """Forget the running broker without stopping it (``driftloop kafka start`` leaves it running)."""
        if self._process is not None:
            _DETACHED.append(self._process)  # keep the handle: Popen warns if collected while running
        self._process = None

    def cleanup(self) -> None:
        self.stop()
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafkaBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def is_broker_process(pid: int) -> bool:
    """True if ``pid`` is alive and runs a Kafka broker (guards against a recycled PID)."""
    try:
        import psutil

        return "kafka.Kafka" in psutil.Process(pid).cmdline()
    except Exception:  # no such process, or not ours to inspect
        return False


def stop_pid(pid: int, timeout_s: float = 30.0) -> bool:
    """Stop a broker started by ``driftloop kafka start``, by PID; False if it was not running."""
    if not is_broker_process(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_broker_process(pid):
            return True
        time.sleep(0.2)
    os.killpg(pid, signal.SIGKILL)
    return True
