"""Local runtime ingress vs a direct MLServer call, same model, same client, one run.

Starts ``driftloop up`` (a separate process, as users run it) on a one-node graph with request
logging to the embedded event log, then measures from this process, for two graphs: the echo model of
the tests (a model that costs nothing, so the ratio is all hop: the worst case) and the product's
forecaster (``bench/bearing-temp-single.yaml``: the SGD pipeline, registered in MLflow):

- sequential latency p50/p99, direct vs ingress, logging off (Seldon-Skip-Logging) and on, with two
  clients: httpx (what a Python user calls with; ~0.35 ms of its own CPU per call) and a minimal
  keep-alive HTTP/1.1 client (the ingress's own node client, ``driftloop_graphs.upstream``), under
  which the ingress's added time is the larger share; and through a bare TCP forwarder in front of
  the same MLServer (``bench.hop_peer``), which shows what any extra hop costs on this machine now;
- p99 through the ingress at a paced 200 req/s (open loop), logging on;
- throughput at concurrency 64, direct vs ingress, logging off and on. The load comes from the minimal
  client: httpx's AsyncClient at concurrency 64 tops out near 300 req/s on this machine, below what
  MLServer serves (~4,000 req/s for the echo model), so with it both sides measure httpx;
- the ingress process's CPU time per request (all its threads, the request-log writer included), which
  unlike wall-clock ratios holds up when other work shares the machine.

The forecaster's graph gets the sequential latencies and the CPU per request (paced and concurrent
load measure the ingress, which the echo graph already does).

Run: ``python -m bench.ingress`` (or ``python -m bench``). Prints ratios against the direct run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from driftloop_graphs.upstream import UpstreamPool

REPO = Path(__file__).resolve().parent.parent

SKIP = {"Seldon-Skip-Logging": "true"}


@dataclass(frozen=True)
class Target:
    """A one-node graph to run: its manifest, model repository, deployment and the request to send."""

    label: str
    manifest: Path
    models: Path
    namespace: str
    name: str
    model: str
    body: bytes


ECHO = Target(
    "echo model (tests/graphs/models/echo-model)",
    REPO / "tests" / "graphs" / "manifests" / "echo-single.yaml",
    REPO / "tests" / "graphs" / "models",
    "bench",
    "echo-single",
    "echo-model",
    json.dumps(
        {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP64", "data": [0.5] * 8}]}
    ).encode(),
)


def forecaster_target(home: Path) -> Target:
    from bench.reference_model import train_and_register
    from driftloop.learning.v2_payload import features_request

    _, rows = train_and_register(home)
    return Target(
        "forecaster (models/bearing-temp, SGD pipeline from the MLflow registry), 1 row",
        REPO / "bench" / "bearing-temp-single.yaml",
        REPO / "models",
        "bench",
        "bearing-temp-single",
        "bearing-temp",
        json.dumps(features_request(rows[:1])).encode(),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sequential(url: str, n: int, headers: dict[str, str], body: bytes) -> list[float]:
    out = []
    headers = {"content-type": "application/json", **headers}
    with httpx.Client(timeout=30) as client:
        for _ in range(50):
            client.post(url, content=body, headers=headers)
        for _ in range(n):
            t0 = time.perf_counter()
            r = client.post(url, content=body, headers=headers)
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
    return out


def _light_target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port, parts.path


def _light_headers(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    extra = tuple((k.lower().encode(), v.encode()) for k, v in headers.items())
    return ((b"content-type", b"application/json"), *extra)


async def _sequential_light(url: str, n: int, headers: dict[str, str], body: bytes) -> list[float]:
    host, port, path = _light_target(url)
    pool = UpstreamPool(max_connections=1)
    wire = _light_headers(headers)
    out = []
    try:
        for i in range(n + 50):
            t0 = time.perf_counter()
            response = await pool.request("POST", host, port, path, body, wire)
            if i >= 50:
                out.append(time.perf_counter() - t0)
            assert response.status == 200, response.body[:300]
    finally:
        await pool.aclose()
    return out


def sequential_light(url: str, n: int, headers: dict[str, str], body: bytes) -> list[float]:
    return asyncio.run(_sequential_light(url, n, headers, body))


async def concurrent(
    url: str, n: int, concurrency: int, headers: dict[str, str], body: bytes, rate: float | None = None
) -> tuple[float, list[float]]:
    """``n`` requests, at most ``concurrency`` in flight (and paced at ``rate`` per second if given)."""
    host, port, path = _light_target(url)
    pool = UpstreamPool(max_connections=concurrency)
    wire = _light_headers(headers)
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    started = time.perf_counter()

    async def one(i: int) -> None:
        if rate:
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        async with semaphore:
            t0 = time.perf_counter()
            response = await pool.request("POST", host, port, path, body, wire)
            latencies.append(time.perf_counter() - t0)
            assert response.status == 200, response.body[:300]

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - started, latencies
    finally:
        await pool.aclose()


def start_runtime(home: Path, target: Target) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {**os.environ, "DRIFTLOOP_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "driftloop", "up", str(target.manifest), "--port", "0"]
    cmd += ["--models", str(target.models)]
    process = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    sys.path.insert(0, str(REPO / "graphs"))
    from driftloop_graphs.control_client import ControlClient
    from driftloop_graphs.run_state import RunState

    directory = home / "run" / "local-runtime"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = RunState.read(directory) if directory.exists() else None
        if state is not None:
            client = ControlClient(state.control_url, RunState.token(directory))
            mlserver = client.deployment(target.namespace, target.name)["predictors"][0]["mlserver"]
            client.close()
            print(f"driftloop up ready in {state.ready_s:.1f} s (pid {state.pid})")
            return (
                process,
                state.deployments[0]["url"] + "/v2/models/infer",
                mlserver + f"/v2/models/{target.model}/infer",
            )
        if process.poll() is not None:
            raise RuntimeError(
                f"driftloop up exited: {process.stdout.read().decode() if process.stdout else ''}"
            )
        time.sleep(0.2)
    raise RuntimeError("driftloop up not ready after 180 s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for index, make_target in enumerate((lambda _: ECHO, forecaster_target)):
            home = Path(tmp) / f"home-{index}"
            target = make_target(home)
            print(f"-- graph: {target.label}")
            process, ingress, direct = start_runtime(home, target)
            try:
                sequential_ratios(ingress, direct, target.body)
                if target is ECHO:
                    load(ingress, direct, target.body)
                cpu_per_request(process.pid, ingress, target.body)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(60)


def sequential_ratios(ingress: str, direct: str, body: bytes) -> None:
    # Interleaved rounds (direct, forwarder, off, on, direct, ...): a change in what else the machine
    # runs then shifts them all alike instead of biasing whichever ran during it.
    rounds, per_round = 5, 400
    with hop_peer(direct) as forwarded:
        for client, call in (("httpx.Client", sequential), ("minimal keep-alive client", sequential_light)):
            series: dict[str, list[float]] = {
                "direct MLServer": [],
                "bare TCP forwarder": [],
                "ingress, logging off": [],
                "ingress, logging on": [],
            }
            for _ in range(rounds):
                series["direct MLServer"] += call(direct, per_round, {}, body)
                series["bare TCP forwarder"] += call(forwarded, per_round, {}, body)
                series["ingress, logging off"] += call(ingress, per_round, SKIP, body)
                series["ingress, logging on"] += call(ingress, per_round, {}, body)
            n = rounds * per_round
            print(f"sequential latency with {client}, {n} requests each, {rounds} interleaved rounds (ms):")
            d = series["direct MLServer"]
            for label, values in series.items():
                p50, p99 = pct(values, 0.5) * 1e3, pct(values, 0.99) * 1e3
                print(
                    f"  {label:22s} p50 {p50:6.2f}  p99 {p99:6.2f}  "
                    f"ratio p50 {p50 / (pct(d, 0.5) * 1e3):4.2f}x  p99 {p99 / (pct(d, 0.99) * 1e3):4.2f}x"
                )
            hop = pct(series["bare TCP forwarder"], 0.5) - pct(d, 0.5)
            own = pct(series["ingress, logging off"], 0.5) - pct(series["bare TCP forwarder"], 0.5)
            print(f"  added at p50: any hop {hop * 1e3:.3f} ms, the ingress's own work {own * 1e3:.3f} ms")


@contextlib.contextmanager
def hop_peer(direct: str) -> Iterator[str]:
    """``bench.hop_peer`` in front of ``direct``'s server: the URL to call through it."""
    from driftloop.eventlog.broker import free_port

    target = urlsplit(direct)
    assert target.hostname is not None and target.port is not None
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.hop_peer", target.hostname, str(target.port), str(port)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bare TCP forwarder (bench.hop_peer) did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}{target.path}"
    finally:
        process.terminate()
        process.wait(10)


def load(ingress: str, direct: str, body: bytes) -> None:
    _, paced = asyncio.run(concurrent(ingress, 4000, 64, {}, body, rate=200))
    p50, p99 = pct(paced, 0.5) * 1e3, pct(paced, 0.99) * 1e3
    print(f"ingress at 200 req/s (4000 requests, logging on): p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    count = 6000
    results: dict[str, list[float]] = {
        "direct MLServer": [],
        "ingress, logging off": [],
        "ingress, logging on": [],
    }
    for _ in range(3):  # interleaved, as above
        for label, url, headers in (
            ("direct MLServer", direct, {}),
            ("ingress, logging off", ingress, SKIP),
            ("ingress, logging on", ingress, {}),
        ):
            seconds, _ = asyncio.run(concurrent(url, count, 64, headers, body))
            results[label].append(count / seconds)
    base = statistics.median(results["direct MLServer"])
    print(f"throughput at concurrency 64 ({count} requests x 3 interleaved rounds, median):")
    for label, rates in results.items():
        rps = statistics.median(rates)
        rounds_text = ", ".join(f"{r:.0f}" for r in rates)
        print(f"  {label:22s} {rps:7.0f} req/s  ratio {rps / base:4.2f}x  (rounds {rounds_text})")


def cpu_per_request(pid: int, ingress: str, body: bytes, n: int = 2000) -> None:
    import psutil

    process = psutil.Process(pid)
    print(f"ingress process CPU per request ({n} sequential requests, user + system, all threads):")
    for label, headers in (("logging off", SKIP), ("logging on", {})):
        before = process.cpu_times()
        sequential(ingress, n, headers, body)
        after = process.cpu_times()
        used = (after.user + after.system) - (before.user + before.system)
        print(f"  {label:12s} {used / (n + 50) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
