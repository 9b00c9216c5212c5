"""Prometheus metrics of the ingress. Each runtime owns its registry (no global state), so several
runtimes can live in one process (tests, benchmarks) and ``/metrics`` shows only its own. What every
request updates lives in loop-owned families (``loop_metrics``); the rest are prometheus_client's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from driftloop_graphs.loop_metrics import LoopCounterFamily, LoopHistogramFamily, LoopMetricsCollector

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class IngressMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("deployment", "predictor")
        self.requests = LoopCounterFamily(
            "driftloop_ingress_requests",
            "Graph requests answered by the ingress, by predictor and HTTP status",
            (*labels, "code"),
        )
        self.latency = LoopHistogramFamily(
            "driftloop_ingress_request_seconds",
            "Latency of whole-graph requests at the ingress",
            labels,
            LATENCY_BUCKETS,
        )
        self.node_requests = LoopCounterFamily(
            "driftloop_node_requests",
            "Calls from the executor to graph nodes, by HTTP status (0 = unreachable)",
            (*labels, "node", "code"),
        )
        self.node_latency = LoopHistogramFamily(
            "driftloop_node_request_seconds",
            "Latency of one graph node call",
            (*labels, "node"),
            LATENCY_BUCKETS,
        )
        self.scored_rows = LoopCounterFamily(
            "driftloop_ingress_scored_rows",
            "Rows whose outlier verdict (an outlier_flag BOOL tensor) a graph node passed on to the next",
            labels,
        )
        self.outlier_rows = LoopCounterFamily(
            "driftloop_ingress_outlier_rows",
            "Rows of driftloop_ingress_scored_rows the graph's outlier node flagged",
            labels,
        )
        self.registry.register(
            LoopMetricsCollector(
                (
                    self.requests,
                    self.latency,
                    self.node_requests,
                    self.node_latency,
                    self.scored_rows,
                    self.outlier_rows,
                )
            )
        )
        self.errors = Counter(
            "driftloop_ingress_errors",
            "Failed graph requests, by the node that failed and why",
            (*labels, "node", "reason"),
            registry=self.registry,
        )
        self.refused = Counter(
            "driftloop_ingress_refused",
            "Requests the ingress refused itself (bad input, limits, unknown routes), by error code",
            ("code",),
            registry=self.registry,
        )
        self.shadow = Counter(
            "driftloop_shadow_requests",
            "Mirrored requests to the shadow predictor, by outcome (ok, error, skipped_overload)",
            ("deployment", "predictor", "outcome"),
            registry=self.registry,
        )
        self.learn = Counter(
            "driftloop_ingress_learn",
            "Learn calls (POST .../v2/models[/<model>]/learn) by outcome: ok (every node learned), "
            "refused (by the ingress itself, also in driftloop_ingress_refused_total), node_refused (a "
            "node's 4xx), node_error (a node failed or could not be reached)",
            ("deployment", "outcome"),
            registry=self.registry,
        )
        self.learned_rows = Counter(
            "driftloop_ingress_learned_rows",
            "Rows each graph node reported learned from learn calls",
            (*labels, "node"),
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
