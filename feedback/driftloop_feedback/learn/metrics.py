"""The trainer's Prometheus metrics, in a registry of its own (served by ``driftloop trainer run``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from driftloop_feedback.learn.batch_histogram import BatchHistogram
from driftloop_feedback.learn.policy import Trigger

REJECT_REASONS = ("undecodable", "features", "target")


class TrainerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.consumed = Counter(
            "driftloop_trainer_examples_consumed",
            "labelled examples read from the topic (each of a batch record; an undecodable record as one)",
            registry=r,
        )
        self.learned = Counter("driftloop_trainer_examples_learned", "new examples learned", registry=r)
        self.replayed = Counter("driftloop_trainer_examples_replayed", "replayed rows learned", registry=r)
        self.duplicates = Counter(
            "driftloop_trainer_examples_duplicate",
            "records skipped as already seen (same example_id)",
            registry=r,
        )
        self.rejected = Counter(
            "driftloop_trainer_examples_rejected",
            "records refused, by reason (undecodable JSON, wrong feature count or non-finite features, "
            "target not a finite number or not a declared class)",
            ["reason"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        self.candidates = Counter(
            "driftloop_trainer_candidates", "candidates cut, by trigger", ["trigger"], registry=r
        )
        for trigger in Trigger:
            self.candidates.labels(trigger.value)
        self.registered = Counter(
            "driftloop_trainer_candidates_registered", "candidates registered in MLflow", registry=r
        )
        self.registration_failures = Counter(
            "driftloop_trainer_registration_failures", "failed registration attempts (retried)", registry=r
        )
        self.pending = Gauge(
            "driftloop_trainer_candidates_pending", "candidates cut, not registered yet", registry=r
        )
        self.candidates_held = Gauge(
            "driftloop_trainer_candidates_held",
            "1 while a due candidate is held because the previous challenger is still judged "
            "(validation pending, or passed and its rollout not concluded)",
            registry=r,
        )
        self.candidate_held_seconds = Gauge(
            "driftloop_trainer_candidate_held_seconds", "how long the held candidate has waited", registry=r
        )
        self.hold_timeouts = Counter(
            "driftloop_trainer_hold_timeouts",
            "held candidates cut anyway after policy.hold_max_s (the previous one still not concluded)",
            registry=r,
        )
        self.hold_checks = Counter(
            "driftloop_trainer_hold_checks",
            "registry reads of the challenger's verdict while a candidate is due",
            registry=r,
        )
        self.hold_check_errors = Counter(
            "driftloop_trainer_hold_check_errors",
            "registry reads of the challenger's verdict that failed (the candidate waits, read again later)",
            registry=r,
        )
        self.last_candidate_version = Gauge(
            "driftloop_trainer_last_candidate_version", "registered version of the last candidate", registry=r
        )
        self.champion_version = Gauge(
            "driftloop_trainer_champion_version", "version the challenger started from", registry=r
        )
        self.champion_live_error = Gauge(
            "driftloop_trainer_champion_live_error",
            "champion's mean loss over its recent labelled window",
            registry=r,
        )
        self.champion_live_error_bound = Gauge(
            "driftloop_trainer_champion_live_error_lower_bound",
            "one-sided lower confidence bound of that mean (the degradation rule compares it)",
            registry=r,
        )
        self.champion_baseline_error = Gauge(
            "driftloop_trainer_champion_baseline_error", "champion's training-time error", registry=r
        )
        self.drift_events = Counter(
            "driftloop_trainer_drift_events", "drift events read, by outcome", ["outcome"], registry=r
        )
        for outcome in ("used", "ignored", "undecodable"):
            self.drift_events.labels(outcome)
        self.checkpoints = Counter("driftloop_trainer_checkpoints", "checkpoints written", registry=r)
        self.label_latency = BatchHistogram(  # observed a step (poll) at a time
            "driftloop_trainer_label_latency_seconds",
            "from the feedback API receiving a truth to its example learned by the challenger "
            "(examples joined by request id: their truth_time is when the API received the truth)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.waiting = Gauge(
            "driftloop_trainer_waiting",
            "1 while the trainer waits (no champion registered, no labelled topic)",
            ["reason"],
            registry=r,
        )
