"""Prometheus metrics of the ingress. Each runtime owns its registry (no global state), so several
runtimes can live in one process (tests, benchmarks) and ``/metrics`` shows only its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("deployment", "predictor")
        self.requests = Counter(
            "driftloop_ingress_requests",
            "Graph requests answered by the ingress, by predictor and HTTP status",
            (*labels, "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "driftloop_ingress_request_seconds",
            "Latency of whole-graph requests at the ingress",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.node_requests = Counter(
            "driftloop_node_requests",
            "Calls from the executor to graph nodes, by HTTP status (0 = unreachable)",
            (*labels, "node", "code"),
            registry=self.registry,
        )
        self.node_latency = Histogram(
            "driftloop_node_request_seconds",
            "Latency of one graph node call",
            (*labels, "node"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "driftloop_ingress_errors",
            "Failed graph requests, by the node that failed and why",
            (*labels, "node", "reason"),
            registry=self.registry,
        )
        self.shadow = Counter(
            "driftloop_shadow_requests",
            "Mirrored requests to the shadow predictor, by outcome (ok, error, skipped_overload)",
            ("deployment", "predictor", "outcome"),
            registry=self.registry,
        )
        self.log_queue_depth = Gauge(
            "driftloop_request_log_queue_depth",
            "Request-log events waiting to be written to the event log",
            registry=self.registry,
        )
        self.log_events = Counter(
            "driftloop_request_log_events",
            "Request-log events by outcome: written, dropped (queue full past the deadline), "
            "sampled (left out under the sample policy), failed (the event log refused them), skipped "
            "(Seldon-Skip-Logging)",
            ("outcome",),
            registry=self.registry,
        )
        self.traffic_weight = Gauge(
            "driftloop_traffic_weight",
            "Current traffic weight (percent) of each predictor",
            labels,
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
