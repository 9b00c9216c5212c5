"""The trainer's typed settings (env prefix ``DRIFTLOOP_TRAINER_``; the candidate policy's fields with
``DRIFTLOOP_TRAINER_POLICY__<FIELD>``, e.g. ``DRIFTLOOP_TRAINER_POLICY__EVERY_N_EXAMPLES=5000``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.settings import StateSettings


class CandidatePolicySettings(BaseModel):
    """When to cut a candidate. Every rule waits for the spacing rules (``min_examples`` learned and
    ``min_interval_s`` elapsed since the last candidate); then, in this order of precedence:

    - ``drift``: a drift event (``is_drift``) about the champion's version has arrived and at least
      ``drift_min_examples`` have been learned since (so the candidate has seen the new regime);
    - ``degradation``: the one-sided lower confidence bound (level ``1 - degradation_alpha``) on the
      champion's mean loss over its last ``degradation_window`` labelled examples exceeds its
      training-time error by more than ``degradation_tolerance`` (relative);
    - ``schedule``: ``every_n_examples`` learned or ``every_s`` seconds since the last candidate.
    """

    model_config = {"extra": "forbid"}

    min_examples: int = Field(default=200, ge=2, description="examples learned since the last candidate")
    min_interval_s: float = Field(default=60.0, ge=0, description="seconds since the last candidate")
    every_n_examples: int | None = Field(default=10_000, ge=1, description="schedule: examples; None = off")
    every_s: float | None = Field(default=3600.0, gt=0, description="schedule: seconds; None = off")
    drift_enabled: bool = True
    drift_min_examples: int = Field(default=200, ge=0, description="examples learned after the drift event")
    drift_any_version: bool = Field(
        default=False, description="act on drift events about any model version, not only the champion's"
    )
    degradation_enabled: bool = True
    degradation_window: int = Field(default=500, ge=10, description="champion's recent losses kept")
    degradation_min_examples: int = Field(default=100, ge=10, description="losses before the rule decides")
    degradation_alpha: float = Field(default=0.01, gt=0, lt=0.5, description="error rate of the bound")
    degradation_tolerance: float = Field(
        default=0.1, ge=0, description="relative excess over the training-time error that counts"
    )
    baseline_examples: int = Field(
        default=200,
        ge=10,
        description="when the champion's run has no training-time error metric: its mean loss on its "
        "first live labelled examples is the baseline",
    )
    hold_max_s: float = Field(
        default=900.0,
        ge=0,
        description="a due candidate is held while the previous challenger is still being judged "
        "(validation pending, or passed and its rollout not concluded), at most this long; then it is "
        "cut anyway; 0 = never held",
    )
    hold_check_s: float = Field(
        default=5.0, gt=0, description="while holding: seconds between registry reads of the challenger"
    )


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_TRAINER_", env_nested_delimiter="__", extra="forbid"
    )

    model_name: str = Field(default="pump-bearing-temp", description="registered model to learn")
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    labelled_topic: str = "driftloop.labelled"
    drift_topic: str = "driftloop.drift"
    group_id: str = Field(default="driftloop-trainer", description="consumer group of the labelled topic")
    state_dir: Path | None = Field(default=None, description="checkpoint folder; default <home>/trainer")
    reset_state: bool = Field(
        default=False,
        description="move aside a checkpoint taken from another log, group or topics, and start again "
        "from the champion and this log's committed offsets; without it such a checkpoint stops the trainer",
    )

    batch_size: int = Field(default=256, ge=1, description="examples per partial_fit mini-batch")
    poll_max_records: int = Field(default=2000, ge=1, description="records per poll, at most")
    poll_max_examples: int = Field(
        default=20_000,
        ge=1,
        description="examples per poll, about: a batch record holds many, so the records asked for "
        "are cut to this over the examples per record of the last poll",
    )
    poll_timeout_s: float = Field(default=0.2, ge=0)
    dedupe_window: int = Field(default=200_000, ge=1, description="example ids remembered for dedupe")
    replay_capacity: int = Field(default=5000, ge=0, description="older examples kept (reservoir)")
    replay_ratio: float = Field(
        default=0.25, ge=0, le=10, description="replayed examples mixed in per new example"
    )
    seed: int = Field(default=0, description="seed of the replay buffer's sampling")

    checkpoint_interval_s: float = Field(default=5.0, gt=0, description="checkpoint, then commit, this often")
    checkpoint_every_examples: int = Field(default=20_000, ge=1, description="... or after this many")
    champion_retry_s: float = Field(default=10.0, gt=0, description="wait between champion look-ups")
    topic_retry_s: float = Field(default=5.0, gt=0, description="wait between labelled-topic look-ups")
    registry_retry_s: float = Field(default=30.0, gt=0, description="wait between registration retries")
    reference_rows: int = Field(default=2000, ge=10, description="window rows kept as the reference")

    policy: CandidatePolicySettings = Field(default_factory=CandidatePolicySettings)

    def checkpoint_dir(self) -> Path:
        return self.state_dir or StateSettings().resolved_home() / "trainer"
