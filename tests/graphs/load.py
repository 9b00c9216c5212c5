"""A small concurrency-limited async load generator for the local-runtime tests and benchmark."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

REQUEST = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]}


@dataclass(frozen=True)
class Outcome:
    puid: str
    status: int
    body: bytes
    seconds: float


async def fire(
    url: str,
    count: int,
    *,
    concurrency: int = 32,
    rate_per_s: float | None = None,
    prefix: str = "req",
    headers: dict[str, str] | None = None,
    json: object = REQUEST,
) -> list[Outcome]:
    """``count`` POSTs to ``url`` (puid ``<prefix>-<i>``), at most ``concurrency`` in flight, paced to
    ``rate_per_s`` when given. Transport errors are outcomes with status 0, never exceptions."""
    semaphore = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> Outcome:
            if rate_per_s:
                delay = started + i / rate_per_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            async with semaphore:
                puid = f"{prefix}-{i}"
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=json, headers={"Seldon-Puid": puid, **(headers or {})})
                except httpx.HTTPError as exc:
                    return Outcome(puid, 0, repr(exc).encode(), time.perf_counter() - t0)
                return Outcome(puid, r.status_code, r.content, time.perf_counter() - t0)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
