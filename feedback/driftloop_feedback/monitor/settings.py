"""The drift monitor's settings (env prefix ``DRIFTLOOP_MONITOR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.seldon_log import DEFAULT_TOPIC
from driftloop_feedback.monitor.alarms import OutlierRateTest

DRIFT_TOPIC = "driftloop.drift"
ALARM_TOPIC = "driftloop.alarms"
# The share of rows the outlier node flags when nothing has changed, with the trainer's defaults
# (TrainingSettings: threshold quantile 0.995 of the reference scores after the 2% most unusual reference
# rows are left out, which are then flagged): 0.02 + 0.98 x 0.005 = 0.0249, rounded up.
TRAINER_OUTLIER_BASE_RATE = 0.025


class MonitorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_MONITOR_", extra="forbid")

    group_id: str = Field(default="driftloop-monitor", description="the monitor's own consumer group")
    reset_state: bool = Field(
        default=False,
        description="move aside a state file taken from another log, group or topic, and start from "
        "this log's committed offsets; without it such a state stops the monitor",
    )
    request_log_topic: str = Field(default=DEFAULT_TOPIC, description="Seldon's request-log topic")
    drift_topic: str = Field(default=DRIFT_TOPIC, description="where drift events are written")
    alarm_topic: str = Field(default=ALARM_TOPIC, description="where alarm events are written")
    model_node: str = Field(default="bearing-temp", description="graph node (modelid) of the model")
    features_tensor: str = "features"
    outlier_flag_tensor: str = "outlier_flag"

    model_name: str = Field(default="pump-bearing-temp", description="registered model whose versions serve")
    fallback_drift_model: str | None = Field(
        default="pump-bearing-temp-drift",
        description="registered drift detector whose @champion is used when a version has no reference",
    )
    exclude_features: list[str] = Field(
        default_factory=list, description="feature names left out of the test (e.g. hour_sin,hour_cos)"
    )

    backend: Literal["alibi", "permissive"] = Field(
        default="alibi", description="alibi: alibi-detect (BSL 1.1); permissive: scipy"
    )
    test: Literal["ks", "cvm"] = "ks"
    correction: Literal["bonferroni", "fdr"] = Field(
        default="bonferroni", description="multiple-testing correction across features"
    )
    alpha: float = Field(default=0.05, gt=0, lt=1, description="false-alarm rate per window")
    serial: Literal["independent", "ar1"] = Field(
        default="independent",
        description="how a window's rows depend on each other: independent (the test's textbook "
        "assumption) or ar1 (a time series: each feature's KS p-value is taken at an effective sample "
        "size from its lag-1 autocorrelation; serial.py)",
    )
    reference: Literal["version", "recent"] = Field(
        default="version",
        description="what a window is tested against: version (the served model version's training "
        "reference) or recent (the last recent_rows rows of the same predictor; recent.py)",
    )
    recent_rows: int = Field(default=2000, ge=2, description="rows of the recent reference")

    outlier_alarm_alpha: float = Field(
        default=0.001,
        gt=0,
        lt=1,
        description="false-alarm probability per window of the outlier-rate alarm (binomial test on the "
        "window's count of flagged rows)",
    )
    outlier_base_rate: float = Field(
        default=TRAINER_OUTLIER_BASE_RATE,
        gt=0,
        lt=1,
        description="share of rows the outlier node flags when nothing has changed (the trainer's "
        "defaults: 0.025); the outlier-rate alarm's null hypothesis",
    )

    window_rows: int = Field(default=500, ge=2, description="a window closes at this many rows ...")
    window_s: float = Field(default=60.0, gt=0, description="... or when it is this old, whichever first")
    min_rows: int = Field(default=50, ge=2, description="fewer rows: the verdict is too_few_rows")

    pair_ttl_s: float = Field(default=120.0, gt=0, description="how long a request waits for its response")
    max_pending: int = Field(default=100_000, ge=1, description="unpaired requests kept at most")
    dedupe_memory: int = Field(default=100_000, ge=1, description="paired request ids remembered")
    reference_retry_s: float = Field(default=60.0, gt=0, description="retry a missing reference after")

    state_dir: Path | None = Field(default=None, description="state folder; default <home>/monitor")
    checkpoint_interval_s: float = Field(default=5.0, gt=0, description="snapshot, then commit")
    poll_max_records: int = Field(default=2000, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> MonitorSettings:
        if self.backend == "permissive" and self.correction != "bonferroni":
            raise ValueError(
                "the permissive backend corrects with Bonferroni only: set "
                "DRIFTLOOP_MONITOR_CORRECTION=bonferroni or DRIFTLOOP_MONITOR_BACKEND=alibi"
            )
        if self.serial == "ar1" and self.test != "ks":
            raise ValueError(
                "serial=ar1 re-takes KS p-values only: set DRIFTLOOP_MONITOR_TEST=ks or "
                "DRIFTLOOP_MONITOR_SERIAL=independent"
            )
        if self.min_rows > self.window_rows:
            raise ValueError(
                f"min_rows ({self.min_rows}) exceeds window_rows ({self.window_rows}): no window could decide"
            )
        return self

    def outlier_test(self) -> OutlierRateTest:
        return OutlierRateTest(self.outlier_base_rate, self.outlier_alarm_alpha, self.window_rows)

    @property
    def detector_kind(self) -> str:
        return f"{'alibi' if self.backend == 'alibi' else 'scipy'}-{self.test}"

    def detector_options(self) -> dict[str, object]:
        opts: dict[str, object] = {"p_val": self.alpha}
        if self.backend == "alibi":
            opts["correction"] = self.correction
        return opts
