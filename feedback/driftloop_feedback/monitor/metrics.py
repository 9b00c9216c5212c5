"""The drift monitor's Prometheus metrics, in a registry of its own (served on ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftloop_feedback.monitor.verdict import DriftVerdict


class MonitorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows = Counter(
            "driftloop_monitor_rows",
            "rows of model calls seen",
            ["predictor", "model_version"],
            registry=r,
        )
        self.windows = Counter(
            "driftloop_monitor_windows_closed",
            "windows closed, by verdict",
            ["predictor", "model_version", "verdict"],
            registry=r,
        )
        self.drift_events = Counter(
            "driftloop_monitor_drift_events",
            "windows whose verdict was drift",
            ["predictor", "model_version"],
            registry=r,
        )
        self.p_value = Gauge(
            "driftloop_monitor_feature_p_value",
            "per-feature p-value of the last window tested",
            ["predictor", "model_version", "feature"],
            registry=r,
        )
        self.distance = Gauge(
            "driftloop_monitor_feature_distance",
            "per-feature test statistic of the last window tested",
            ["predictor", "model_version", "feature"],
            registry=r,
        )
        self.outlier_rate = Gauge(
            "driftloop_monitor_outlier_rate",
            "share of the last window's rows the outlier node flagged",
            ["predictor", "model_version"],
            registry=r,
        )
        self.alarms = Counter(
            "driftloop_monitor_alarms",
            "alarms raised, by kind (outlier_rate)",
            ["predictor", "model_version", "kind"],
            registry=r,
        )
        self.skipped = Counter(
            "driftloop_monitor_events_skipped",
            "request-log events not used, by reason",
            ["reason"],
            registry=r,
        )
        self.unpaired = Counter(
            "driftloop_monitor_unpaired",
            "model requests whose response never came, by reason",
            ["reason"],
            registry=r,
        )
        self.skipped_rows = Counter(
            "driftloop_monitor_rows_skipped", "rows not windowed, by reason", ["reason"], registry=r
        )
        self.pending = Gauge("driftloop_monitor_pending_requests", "requests awaiting a response", registry=r)
        self.open_rows = Gauge("driftloop_monitor_open_window_rows", "rows in open windows", registry=r)
        self.checkpoints = Counter("driftloop_monitor_checkpoints", "state snapshots committed", registry=r)

    def verdict(self, v: DriftVerdict) -> None:
        self.windows.labels(v.predictor, v.model_version, v.verdict).inc()
        if v.is_drift:
            self.drift_events.labels(v.predictor, v.model_version).inc()
        if v.outlier_rate is not None:
            self.outlier_rate.labels(v.predictor, v.model_version).set(v.outlier_rate)
        for name, p in v.p_values.items():
            if p is not None:
                self.p_value.labels(v.predictor, v.model_version, name).set(p)
        for name, d in v.distances.items():
            if d is not None:
                self.distance.labels(v.predictor, v.model_version, name).set(d)
