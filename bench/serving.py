"""Serving benchmark: the forecaster through MLServer over HTTP vs an in-process ``predict`` call.

One run: train + register the reference model in a throw-away DRIFTLOOP_HOME, then for
``parallel_workers`` 0 and 1 start ``mlserver start models/`` on 127.0.0.1, make SEQUENTIAL calls one
at a time (latency) and CONCURRENT calls from CLIENTS threads (throughput), read the RSS of the MLServer
process tree, and stop it. The peer is ``estimator.predict`` on the same single-row inputs in this process.
Figures are printed as ratios against that peer. Run: ``python -m bench serving``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

SEQUENTIAL = 1000
CONCURRENT = 2000
CLIENTS = 8
WARMUP = 50
REPOSITORY = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class Figures:
    label: str
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    rss_mb: float | None


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def in_process(model: object, rows: np.ndarray) -> Figures:
    predict = model.predict  # type: ignore[attr-defined]
    for row in rows[:WARMUP]:
        predict(row[None, :])
    latencies = []
    for i in range(SEQUENTIAL):
        row = rows[i % len(rows)][None, :]
        started = time.perf_counter()
        predict(row)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(CONCURRENT):
        predict(rows[i % len(rows)][None, :])
    throughput = CONCURRENT / (time.perf_counter() - started)
    return Figures(
        "in-process predict", percentile_ms(latencies, 50), percentile_ms(latencies, 99), throughput, None
    )


def _bodies(rows: np.ndarray) -> list[dict[str, object]]:
    from driftloop.learning.v2_payload import features_request

    return [features_request(row[None, :]) for row in rows]


def over_http(url: str, rows: np.ndarray) -> tuple[list[float], float, int]:
    bodies = _bodies(rows)
    path = "/v2/models/bearing-temp/infer"
    with httpx.Client(base_url=url, timeout=30) as client:
        for body in bodies[:WARMUP]:
            client.post(path, json=body).raise_for_status()
        latencies = []
        for i in range(SEQUENTIAL):
            started = time.perf_counter()
            client.post(path, json=bodies[i % len(bodies)]).raise_for_status()
            latencies.append(time.perf_counter() - started)

    failures: list[int] = []  # status codes other than 200, appended by the client threads
    per_client = CONCURRENT // CLIENTS

    def hammer(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as own:
            for i in range(per_client):
                status = own.post(path, json=bodies[(offset + i) % len(bodies)]).status_code
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=hammer, args=(k * per_client,)) for k in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    throughput = per_client * CLIENTS / (time.perf_counter() - started)
    return latencies, throughput, len(failures)


def through_mlserver(parallel_workers: int, env: dict[str, str], rows: np.ndarray, run_dir: Path) -> Figures:
    from driftloop.mlserver_process import MLServerProcess

    started = time.perf_counter()
    with MLServerProcess(
        REPOSITORY, env=env, parallel_workers=parallel_workers, run_dir=run_dir / f"pw{parallel_workers}"
    ) as server:
        print(
            f"  parallel_workers={parallel_workers}: ready in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        latencies, throughput, failures = over_http(server.url, rows)
        rss_mb = server.rss_bytes() / 2**20
    if failures:
        raise RuntimeError(f"{failures} failed requests with parallel_workers={parallel_workers}")
    return Figures(
        f"MLServer HTTP, parallel_workers={parallel_workers}",
        percentile_ms(latencies, 50),
        percentile_ms(latencies, 99),
        throughput,
        rss_mb,
    )


def main() -> None:
    from bench.reference_model import train_and_register
    from driftloop.cli.serve import server_env
    from driftloop.settings import StateSettings

    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as tmp:
        state = StateSettings(home=Path(tmp) / "home", mlflow_tracking_uri=None)
        result, rows = train_and_register(state.home)

        peer = in_process(result.model, rows)
        served = [through_mlserver(pw, server_env(state), rows, Path(tmp)) for pw in (0, 1)]

    print(
        f"  latency: {SEQUENTIAL} sequential single-row calls; throughput: {CONCURRENT} single-row calls "
        f"from {CLIENTS} client threads over HTTP (in-process: one thread, back to back)"
    )
    print(f"  {'path':<34} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>9} {'RSS MB':>8}")
    for fig in [peer, *served]:
        rss = f"{fig.rss_mb:8.0f}" if fig.rss_mb is not None else f"{'-':>8}"
        print(f"  {fig.label:<34} {fig.p50_ms:8.3f} {fig.p99_ms:8.3f} {fig.throughput_rps:9.0f} {rss}")
    for fig in served:
        print(
            f"  ratio {fig.label} / in-process: p50 x{fig.p50_ms / peer.p50_ms:.0f}, "
            f"p99 x{fig.p99_ms / peer.p99_ms:.0f}, throughput x{fig.throughput_rps / peer.throughput_rps:.4f}"
        )
    w0, w1 = served
    print(
        f"  ratio parallel_workers=1 / 0: p50 x{w1.p50_ms / w0.p50_ms:.2f}, "
        f"throughput x{w1.throughput_rps / w0.throughput_rps:.2f}, "
        f"RSS x{(w1.rss_mb or 0) / (w0.rss_mb or 1):.2f}"
    )


if __name__ == "__main__":
    main()
