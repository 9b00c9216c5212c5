"""Event-log benchmark: ``python -m bench eventlog``.

1 KB messages. For the embedded log: produce and consume throughput, send->ack and produce->consume
latency. For Kafka (a real broker started here with LocalKafkaBroker, stopped at the end):
driftloop's Kafka implementation against raw kafka-python with the same settings, on the same broker,
in the same run, printed as ratios (driftloop / raw; for latency lower is better, for throughput
higher). Then the memory of a consumer that holds 1M polled-but-uncommitted records' offsets.
``DRIFTLOOP_BENCH_QUICK=1`` runs a tenth of the sizes.
"""

from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from driftloop.eventlog import EventLog
from driftloop.eventlog.broker import LocalKafkaBroker
from driftloop.eventlog.embedded import EmbeddedEventLog
from driftloop.eventlog.settings import KafkaSettings

QUICK = os.environ.get("DRIFTLOOP_BENCH_QUICK") == "1"
SCALE = 10 if QUICK else 1
MESSAGES = 20_000 // SCALE
LATENCY_MESSAGES = 2_000 // SCALE
HOLD_OFFSETS = 1_000_000 // SCALE
PAYLOAD = os.urandom(1024)
MB = 1024 * 1024


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Figures:
    produce_msg_s: float = 0.0
    consume_msg_s: float = 0.0
    ack_p50_ms: float = 0.0
    ack_p99_ms: float = 0.0
    e2e_p50_ms: float = 0.0
    e2e_p99_ms: float = 0.0

    def show(self, name: str) -> None:
        print(
            f"{name:<22} produce {self.produce_msg_s:>9,.0f} msg/s "
            f"({self.produce_msg_s * 1024 / MB:6.1f} MB/s)  "
            f"consume {self.consume_msg_s:>9,.0f} msg/s ({self.consume_msg_s * 1024 / MB:6.1f} MB/s)  "
            f"send->ack p50 {self.ack_p50_ms:6.2f} ms p99 {self.ack_p99_ms:6.2f} ms  "
            f"produce->consume p50 {self.e2e_p50_ms:6.2f} ms p99 {self.e2e_p99_ms:6.2f} ms",
            flush=True,
        )


class Client:
    """The four operations measured, so driftloop's log and raw kafka-python run the same code."""

    def __init__(
        self,
        send: Callable[[str, bytes], Any],
        wait: Callable[[Any], None],
        flush: Callable[[], None],
        consumer: Callable[[str, str], Callable[[], list[bytes]]],
    ) -> None:
        self.send, self.wait, self.flush, self.consumer = send, wait, flush, consumer


def driftloop_client(log: EventLog) -> Client:
    producer = log.producer()

    def consumer(group: str, topic: str) -> Callable[[], list[bytes]]:
        c = log.consumer(group, [topic])
        return lambda: [r.value for r in c.poll(timeout_s=0.1)]

    return Client(lambda t, v: producer.send(t, v), lambda d: d.get(30), lambda: producer.flush(60), consumer)


def raw_kafka_client(bootstrap: str) -> Client:
    import kafka

    producer = kafka.KafkaProducer(  # the settings driftloop's producer uses
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=KafkaSettings().batch_size_bytes,
    )

    def consumer(group: str, topic: str) -> Callable[[], list[bytes]]:
        c = kafka.KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        c.subscribe([topic])
        return lambda: [r.value for batch in c.poll(timeout_ms=100).values() for r in batch]

    return Client(lambda t, v: producer.send(t, v), lambda f: f.get(30), lambda: producer.flush(60), consumer)


def measure(client: Client, create_topic: Callable[[str], None]) -> Figures:
    fig = Figures()
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    create_topic(topic)
    start = time.perf_counter()
    for _ in range(MESSAGES):
        client.send(topic, PAYLOAD)
    client.flush()
    fig.produce_msg_s = MESSAGES / (time.perf_counter() - start)

    poll = client.consumer(f"g-{topic}", topic)
    got = 0
    start = time.perf_counter()
    while got < MESSAGES:
        got += len(poll())
    fig.consume_msg_s = MESSAGES / (time.perf_counter() - start)

    acks = []
    for _ in range(LATENCY_MESSAGES):
        t0 = time.perf_counter()
        client.wait(client.send(topic, PAYLOAD))
        acks.append((time.perf_counter() - t0) * 1000)
    fig.ack_p50_ms, fig.ack_p99_ms = pct(acks, 0.5), pct(acks, 0.99)

    e2e_topic = f"{topic}.e2e"
    create_topic(e2e_topic)
    poll = client.consumer(f"g-{e2e_topic}", e2e_topic)
    sent: dict[bytes, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def receive() -> None:
        while len(latencies) < LATENCY_MESSAGES and not done.is_set():
            for value in poll():
                now = time.perf_counter()
                started = sent.get(value[:16])
                if started is not None:  # not a warm-up record
                    latencies.append((now - started) * 1000)

    warm = time.monotonic() + 30  # let the consumer join and get its partition first
    while not poll() and time.monotonic() < warm:
        client.wait(client.send(e2e_topic, b"w" * 16 + PAYLOAD[16:]))
    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    for i in range(LATENCY_MESSAGES):
        tag = f"{i:016d}".encode()
        sent[tag] = time.perf_counter()
        client.send(e2e_topic, tag + PAYLOAD[16:])
        time.sleep(0.002)
    client.flush()
    thread.join(60)
    done.set()
    fig.e2e_p50_ms, fig.e2e_p99_ms = pct(latencies, 0.5), pct(latencies, 0.99)
    return fig


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / MB


def hold_uncommitted(log: EventLog, name: str) -> None:
    """Poll HOLD_OFFSETS small records without committing; report the consumer's memory growth."""
    topic = f"hold.{uuid.uuid4().hex[:8]}"
    log.create_topic(topic, 4)
    producer = log.producer()
    start = time.perf_counter()
    for i in range(HOLD_OFFSETS):
        producer.send(topic, b"%015d" % i)
    producer.flush(120)
    fill_s = time.perf_counter() - start
    consumer = log.consumer(f"hold-{topic}", [topic])
    gc.collect()
    before = rss_mb()
    got = 0
    deadline = time.monotonic() + 600
    while got < HOLD_OFFSETS and time.monotonic() < deadline:
        got += len(consumer.poll(timeout_s=0.5, max_records=5000))
    gc.collect()
    after = rss_mb()
    lag = sum(consumer.lag().values())
    print(
        f"{name:<22} consumer holding {got:,} uncommitted offsets (lag {lag:,}): "
        f"RSS {before:.0f} -> {after:.0f} MB "
        f"(+{after - before:.1f} MB); filled in {fill_s:.1f} s",
        flush=True,
    )
    consumer.close()


def main() -> None:
    print(f"1 KB messages: {MESSAGES:,} for throughput, {LATENCY_MESSAGES:,} for latency", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-eventlog-") as tmp:
        embedded = EmbeddedEventLog(Path(tmp) / "log")
        measure(driftloop_client(embedded), embedded.create_topic).show("embedded (sqlite WAL)")
        hold_uncommitted(embedded, "embedded")
        embedded.close()

    with LocalKafkaBroker() as broker:
        settings = KafkaSettings(linger_ms=5)
        from driftloop.eventlog.kafka import KafkaEventLog

        log = KafkaEventLog(broker.bootstrap_servers, settings)
        results: dict[str, list[Figures]] = {"raw": [], "driftloop": []}
        for round_ in range(2):  # alternate the order so neither side always runs on a warmer broker
            order = ["raw", "driftloop"] if round_ == 0 else ["driftloop", "raw"]
            for side in order:
                client = (
                    raw_kafka_client(broker.bootstrap_servers) if side == "raw" else driftloop_client(log)
                )
                results[side].append(measure(client, lambda t: log.create_topic(t, 1)))
        best = {side: pick_best(figs) for side, figs in results.items()}
        best["raw"].show("kafka: raw kafka-python")
        best["driftloop"].show("kafka: driftloop")
        d, r = best["driftloop"], best["raw"]
        print(
            "kafka ratio driftloop/raw: "
            f"produce {d.produce_msg_s / r.produce_msg_s:.2f}x  "
            f"consume {d.consume_msg_s / r.consume_msg_s:.2f}x  "
            f"send->ack p50 {d.ack_p50_ms / r.ack_p50_ms:.2f}x p99 {d.ack_p99_ms / r.ack_p99_ms:.2f}x  "
            f"produce->consume p50 {d.e2e_p50_ms / r.e2e_p50_ms:.2f}x p99 {d.e2e_p99_ms / r.e2e_p99_ms:.2f}x",
            flush=True,
        )
        hold_uncommitted(log, "kafka: driftloop")
        log.close()


def pick_best(figs: list[Figures]) -> Figures:
    return Figures(
        produce_msg_s=max(f.produce_msg_s for f in figs),
        consume_msg_s=max(f.consume_msg_s for f in figs),
        ack_p50_ms=min(f.ack_p50_ms for f in figs),
        ack_p99_ms=min(f.ack_p99_ms for f in figs),
        e2e_p50_ms=min(f.e2e_p50_ms for f in figs),
        e2e_p99_ms=min(f.e2e_p99_ms for f in figs),
    )


if __name__ == "__main__":
    main()
