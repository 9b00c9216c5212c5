"""The rollout controller's Prometheus metrics, in a registry of its own (served by ``driftloop rollout
run --metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

CHECK_RESULTS = ("passed", "failed", "inconclusive")
OUTCOMES = ("promoted", "rolled_back", "aborted")
# why a labelled row read from the topic did not feed the canary's step test
SKIP_REASONS = ("duplicate", "undecodable", "other_endpoint", "other_version", "idle", "features", "truth")


class RolloutMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.step = Gauge("driftloop_rollout_step", "current step index (-1: none)", registry=r)
        self.weight = Gauge(
            "driftloop_rollout_canary_weight", "canary traffic weight set (percent)", registry=r
        )
        self.candidate = Gauge(
            "driftloop_rollout_candidate_version", "version being rolled out (0: none)", registry=r
        )
        self.failed_checks = Gauge(
            "driftloop_rollout_failed_checks", "failed checks of the rollout in progress", registry=r
        )
        self.step_examples = Gauge(
            "driftloop_rollout_step_examples", "paired examples in the current step's test", registry=r
        )
        self.checks = Counter(
            "driftloop_rollout_checks", "checks by result (inconclusive = wait)", ["result"], registry=r
        )
        for result in CHECK_RESULTS:
            self.checks.labels(result)
        self.rollouts = Counter(
            "driftloop_rollout_rollouts", "rollouts ended, by outcome", ["outcome"], registry=r
        )
        for outcome in OUTCOMES:
            self.rollouts.labels(outcome)
        self.rows_read = Counter("driftloop_rollout_rows_read", "labelled records read", registry=r)
        self.rows_used = Counter(
            "driftloop_rollout_rows_used", "canary rows fed to a step's test", registry=r
        )
        self.rows_skipped = Counter(
            "driftloop_rollout_rows_skipped",
            "labelled rows not fed to a test, by reason",
            ["reason"],
            registry=r,
        )
        for reason in SKIP_REASONS:
            self.rows_skipped.labels(reason)
        self.failures = Counter(
            "driftloop_rollout_call_failures",
            "failed calls to the traffic backend, metrics or registry (retried on the next tick)",
            ["target"],
            registry=r,
        )
        for target in ("backend", "registry", "metrics"):
            self.failures.labels(target)
