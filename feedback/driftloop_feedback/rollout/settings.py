"""The rollout controller's settings (env prefix ``DRIFTLOOP_ROLLOUT_``), in Flagger's vocabulary:

=====================  ==========================================  ===================================
Flagger                 here (env ``DRIFTLOOP_ROLLOUT_<NAME>``)     meaning
=====================  ==========================================  ===================================
``stepWeight``          ``step_weight``                             canary weight added per step
``stepWeights``         ``step_weights`` (JSON list, e.g. [5,25])   explicit weights (then no max_weight)
``maxWeight``           ``max_weight``                              last step; promotion is decided there
``interval``            ``interval_s``                              time between checks
``threshold``           ``threshold``                               failed checks before rollback
``progressDeadline``    ``progress_deadline_s``                     longest wait at one weight
=====================  ==========================================  ===================================

How a step's ground truth is judged (alpha, margin, mode, loss and its bound, min/max examples) is the
validator's ``ValidationSettings`` (``DRIFTLOOP_VALIDATION_*``): one definition of "better".
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.settings import StateSettings


class RolloutSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_ROLLOUT_", extra="forbid")

    # what is rolled out where
    model_name: str = Field(default="pump-bearing-temp", description="registered model")
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    namespace: str = Field(default="plant", description="SeldonDeployment namespace")
    deployment: str = Field(default="pump-bearing-temp", description="SeldonDeployment name")
    main_predictor: str = "main"
    canary_predictor: str = "canary"
    model_node: str = Field(default="bearing-temp", description="graph node serving the model")

    # Flagger's analysis
    step_weight: int = Field(default=10, ge=1, le=100, description="stepWeight")
    step_weights: list[int] | None = Field(default=None, description="stepWeights (overrides stepWeight)")
    max_weight: int = Field(default=50, ge=1, le=100, description="maxWeight")
    interval_s: float = Field(default=60.0, gt=0, description="interval between checks")
    threshold: int = Field(default=2, ge=1, description="failed checks before rollback")
    progress_deadline_s: float = Field(
        default=1800.0, gt=0, description="longest time at one weight without a decision"
    )

    # operations gate (ingress metrics over the last interval, canary against main)
    max_error_rate_increase: float = Field(
        default=0.01, ge=0, le=1, description="canary 5xx rate may exceed main's by at most this"
    )
    max_p99_ratio: float = Field(default=1.5, ge=1.0, description="canary p99 <= main p99 x this + slack")
    p99_slack_s: float = Field(default=0.01, ge=0, description="absolute latency slack added to the limit")
    min_requests: int = Field(
        default=20, ge=1, description="fewer canary (or main) requests in an interval: no ops verdict"
    )
    max_outlier_rate_increase: float = Field(
        default=0.05, ge=0, lt=1, description="canary outlier rate may exceed main's by at most this"
    )
    outlier_alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="error rate of the one-sided outlier-rate test per check"
    )
    min_scored_rows: int = Field(
        default=100,
        ge=1,
        description="fewer rows scored on canary or main in an interval: no outlier verdict",
    )
    metrics_url: str | None = Field(
        default=None, description="the ingress /metrics URL; default from the local runtime's run dir"
    )
    ops_source: Literal["ingress", "prometheus"] | None = Field(
        default=None,
        description="ingress: scrape the local ingress's /metrics; prometheus: query Seldon's executor "
        "histogram in Prometheus; default prometheus with the kubernetes backend and a prometheus_url",
    )
    prometheus_url: str | None = Field(
        default=None,
        description="prometheus: the server's base URL, e.g. http://prometheus-operated.monitoring:9090",
    )
    prometheus_selector: str = Field(
        default="", description='prometheus: extra label matchers for the query, e.g. namespace="plant"'
    )

    # where the traffic is changed (docs/rollout.md, "Kubernetes backend")
    backend: Literal["local", "kubernetes"] = Field(
        default="local",
        description="local: the local runtime's control API; kubernetes: the SeldonDeployment",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="kubernetes: kubeconfig; default the pod's service account, else $KUBECONFIG",
    )
    kube_context: str | None = Field(default=None, description="kubernetes: kubeconfig context")
    lease_name: str | None = Field(
        default=None, description="kubernetes: the Lease's name; default driftloop-rollout-<deployment>"
    )

    # topics, lease, polling
    labelled_topic: str = "driftloop.labelled"
    rollouts_topic: str = "driftloop.rollouts"
    group_id: str = Field(default="driftloop-rollout", description="consumer group of the labelled topic")
    lease_ttl_s: float = Field(default=30.0, gt=0, description="a lease not renewed for this long expires")
    state_dir: Path | None = Field(default=None, description="lease folder; default <home>/rollout")
    registry_poll_s: float = Field(default=5.0, gt=0, description="look for a new challenger this often")
    poll_max_records: int = Field(default=2000, ge=1)
    poll_timeout_s: float = Field(default=0.2, ge=0)
    dedupe_window: int = Field(default=100_000, ge=1)

    @model_validator(mode="after")
    def _weights_make_sense(self) -> RolloutSettings:
        if self.step_weights is not None:
            w = self.step_weights
            if not w or any(not 1 <= x <= 100 for x in w) or any(b <= a for a, b in itertools.pairwise(w)):
                raise ValueError(
                    f"step_weights={w} must be a non-empty, strictly increasing list of weights in 1..100 "
                    "(fix DRIFTLOOP_ROLLOUT_STEP_WEIGHTS, e.g. [5, 10, 25, 50])"
                )
            if "max_weight" in self.model_fields_set and self.max_weight != w[-1]:
                raise ValueError(
                    f"max_weight={self.max_weight} and step_weights={w} disagree: with step_weights the "
                    "last weight is the maximum; unset DRIFTLOOP_ROLLOUT_MAX_WEIGHT"
                )
        elif self.step_weight > self.max_weight:
            raise ValueError(
                f"step_weight={self.step_weight} is above max_weight={self.max_weight}: lower "
                "DRIFTLOOP_ROLLOUT_STEP_WEIGHT or raise DRIFTLOOP_ROLLOUT_MAX_WEIGHT"
            )
        if self.main_predictor == self.canary_predictor:
            raise ValueError("main_predictor and canary_predictor must be different predictors")
        if self.ops_source == "prometheus" and not self.prometheus_url:
            raise ValueError(
                "ops_source=prometheus needs the server's URL: set DRIFTLOOP_ROLLOUT_PROMETHEUS_URL "
                "(e.g. http://prometheus-operated.monitoring:9090)"
            )
        return self

    def resolved_ops_source(self) -> Literal["ingress", "prometheus"]:
        """``ops_source``, else prometheus with the kubernetes backend when a Prometheus URL is set."""
        if self.ops_source is not None:
            return self.ops_source
        return "prometheus" if self.backend == "kubernetes" and self.prometheus_url else "ingress"

    def weights(self) -> list[int]:
        """The canary weight of each step, the last one being the maximum."""
        if self.step_weights is not None:
            return list(self.step_weights)
        steps = list(range(self.step_weight, self.max_weight + 1, self.step_weight))
        if steps[-1] != self.max_weight:
            steps.append(self.max_weight)
        return steps

    def lease_path(self) -> Path:
        folder = self.state_dir or StateSettings().resolved_home() / "rollout"
        return folder / f"{self.namespace}.{self.deployment}.lease"

    @property
    def key(self) -> str:
        """The deployment's key on the rollouts topic and in the lease: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.deployment}"
