"""The validator worker's Prometheus metrics, in a registry of its own (served by ``driftloop validator
run``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# Why a labelled row read from the topic was not scored (every row read is either scored or one of these).
SKIP_REASONS = (
    "duplicate",  # an example_id already read (the topic is at-least-once)
    "undecodable",  # not a labelled example
    "idle",  # no validation in progress (no challenger, or it already has a verdict)
    "trained_on",  # inside the challenger's data window: it may have learned the row
    "features",  # wrong number of features for the models, or not finite
    "truth",  # a truth the loss cannot use (not a finite number for a regressor, wrong label type)
    "prediction",  # a model returned a non-finite prediction or probability for the row
    "unused",  # read after the verdict or the budget
)
OUTCOMES = ("pass", "fail", "inconclusive", "superseded")
WAIT_REASONS = ("champion", "challenger", "topic", "registry", "config")


class ValidatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.read = Counter(
            "driftloop_validator_rows_read", "labelled records read from the topic", registry=r
        )
        self.scored = Counter(
            "driftloop_validator_rows_scored",
            "rows whose paired loss difference was fed to the test",
            registry=r,
        )
        self.skipped = Counter(
            "driftloop_validator_rows_skipped", "rows read but not scored, by reason", ["reason"], registry=r
        )
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        self.clipped = Counter(
            "driftloop_validator_rows_clipped",
            "scored rows where a loss was clipped to the bound",
            registry=r,
        )
        self.verdicts = Counter(
            "driftloop_validator_verdicts",
            "verdicts written to the registry, by outcome",
            ["verdict"],
            registry=r,
        )
        for outcome in OUTCOMES:
            self.verdicts.labels(outcome)
        self.registry_failures = Counter(
            "driftloop_validator_registry_failures",
            "failed registry calls (retried with backoff)",
            registry=r,
        )
        self.state_saves = Counter("driftloop_validator_state_saves", "state files written", registry=r)
        self.bound = Gauge(
            "driftloop_validator_bound",
            "anytime-valid bound on E[loss(challenger) - loss(champion)] of the validation in progress",
            ["side"],
            registry=r,
        )
        self.mean = Gauge(
            "driftloop_validator_mean_difference", "mean paired loss difference so far", registry=r
        )
        self.threshold = Gauge(
            "driftloop_validator_threshold",
            "the bounds are compared with this (-margin or +margin)",
            registry=r,
        )
        self.examples = Gauge(
            "driftloop_validator_examples", "paired examples in the validation in progress", registry=r
        )
        self.challenger_version = Gauge(
            "driftloop_validator_challenger_version", "version under validation (0: none)", registry=r
        )
        self.champion_version = Gauge(
            "driftloop_validator_champion_version", "champion it is compared with (0: none)", registry=r
        )
        self.waiting = Gauge(
            "driftloop_validator_waiting",
            "1 while the validator waits (no champion, no challenger, no labelled topic, registry "
            "unreachable, a challenger it cannot validate with these settings)",
            ["reason"],
            registry=r,
        )
        for reason in WAIT_REASONS:
            self.waiting.labels(reason)
