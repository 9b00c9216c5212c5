"""The joiner's settings (env prefix ``DRIFTLOOP_JOINER_``)."""

from __future__ import annotations

from pathlib import Path

from driftloop_feedback.join.assembler import TensorNames
from driftloop_feedback.join.rules import JoinMode, JoinRules
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.seldon_log import DEFAULT_TOPIC


class JoinerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_JOINER_", extra="ignore")

    group_id: str = Field(
        default="driftloop-joiner", description="consumer-group prefix; stages append their name"
    )
    request_log_topic: str = Field(default=DEFAULT_TOPIC, description="Seldon's request-log topic (no key)")
    keyed_log_topic: str = Field(
        default="driftloop.requestlog", description="request log re-keyed by request id"
    )
    feedback_topic: str = "driftloop.feedback"
    telemetry_topic: str = "driftloop.telemetry"
    predictions_topic: str = Field(
        default="driftloop.predictions", description="rows forwarded to the asset join"
    )
    labelled_topic: str = "driftloop.labelled"
    partitions: int = Field(default=4, ge=1, description="partitions of the topics the joiner creates")

    mode: JoinMode = "auto"
    ttl_s: float = Field(default=7200.0, gt=0, description="how long a prediction waits for its truth")
    allowed_lateness_s: float = Field(
        default=300.0, ge=0, description="asset join: readings this late still count"
    )
    tolerance_s: float = Field(
        default=150.0, ge=0, description="asset join: max |reading time - (t + horizon)|"
    )
    retention_s: float = Field(
        default=7200.0, gt=0, description="asset join: readings kept behind the watermark"
    )
    truth_field: str = Field(default="bearing_temp", description="which reading value is the ground truth")
    default_horizon_s: float | None = Field(default=None, description="horizon when the response has none")
    features_tensor: str = "features"
    prediction_tensor: str = "prediction"
    asset_tensor: str = "asset_id"
    event_time_tensor: str = "event_time"

    state_dir: Path | None = Field(
        default=None, description="snapshot directory; default <home>/feedback/joiner"
    )
    reset_state: bool = Field(
        default=False,
        description="discard (move aside) snapshots taken from another log, group or topics, and start "
        "those shards from this log's committed offsets; without it such snapshots stop the joiner",
    )
    checkpoint_interval_s: float = Field(default=2.0, gt=0, description="flush output, snapshot, commit")
    # A checkpoint copies each changed shard's whole state (~190 B per pending prediction: 0.07 s of CPU
    # for 250k here): checkpoints are spaced so that copying takes at most this share of the stage's time.
    checkpoint_max_share: float = Field(
        default=0.05, gt=0, le=1, description="share of time checkpoints may spend copying state"
    )
    timer_interval_s: float = Field(default=1.0, gt=0)
    lag_interval_s: float = Field(
        default=5.0, gt=0, description="consumer lag (metrics, breaker) refreshed at most this often"
    )
    poll_max_records: int = Field(default=5000, ge=1, description="records per poll of each stage")
    # Outputs since the last checkpoint began before one is forced: they are what a restart redoes, and
    # what the producer may hold unsent (100k labelled examples ~ 33 MB). Each checkpoint copies the
    # shards' whole state, so a low bound costs most when many predictions are pending.
    max_in_flight: int = Field(
        default=100_000, ge=1, description="outputs since the last checkpoint before one is forced"
    )
    max_pending: int = Field(default=2_000_000, ge=1, description="pending predictions before inputs pause")
    breaker_enabled: bool = Field(default=False, description="sample predictions out when lag explodes")
    breaker_lag: int = Field(
        default=1_000_000, ge=1, description="prediction-input lag that trips the breaker"
    )
    breaker_keep_fraction: float = Field(default=0.1, gt=0, le=1, description="share of predictions kept")

    def rules(self) -> JoinRules:
        return JoinRules(
            mode=self.mode,
            ttl_s=self.ttl_s,
            allowed_lateness_s=self.allowed_lateness_s,
            tolerance_s=self.tolerance_s,
            retention_s=self.retention_s,
            truth_field=self.truth_field,
            default_horizon_s=self.default_horizon_s,
        )

    def tensor_names(self) -> TensorNames:
        return TensorNames(
            features=self.features_tensor,
            prediction=self.prediction_tensor,
            asset_id=self.asset_tensor,
            event_time=self.event_time_tensor,
        )
