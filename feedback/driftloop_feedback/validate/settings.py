"""The validator's settings: how a challenger is judged (``ValidationSettings``, env prefix
``DRIFTLOOP_VALIDATION_``) and how the worker runs (``ValidatorSettings``, ``DRIFTLOOP_VALIDATOR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.settings import StateSettings

Mode = Literal["superiority", "non-inferiority"]
LossName = Literal["absolute", "squared", "log", "zero_one"]


class ValidationSettings(BaseSettings):
    """How a challenger is judged against the champion on paired per-example losses.

    ``margin`` is in loss units. In ``superiority`` mode the challenger passes when its mean loss is
    below the champion's by more than ``margin``; in ``non-inferiority`` mode when it is at most
    ``margin`` above it.
    """

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_VALIDATION_", extra="forbid")

    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="chance of any wrong verdict, ever")
    margin: float = Field(default=0.0, ge=0.0, description="superiority/non-inferiority margin, loss units")
    mode: Mode = "superiority"
    min_examples: int = Field(default=30, ge=1, description="no verdict before this many paired examples")
    max_examples: int = Field(
        default=20_000, ge=1, description="budget: undecided here, the verdict stays inconclusive"
    )
    loss: LossName | None = Field(
        default=None, description="per-example loss; default absolute (regression), zero_one (classifier)"
    )
    loss_bound: float | None = Field(
        default=None,
        gt=0.0,
        description="each loss is clipped to [0, loss_bound]; required for absolute and squared losses",
    )
    probability_floor: float = Field(
        default=1e-4, gt=0.0, lt=0.5, description="log loss: probabilities clipped to [floor, 1]"
    )
    batch_size: int = Field(default=64, ge=1, description="examples scored per model call")

    @model_validator(mode="after")
    def _budget_covers_minimum(self) -> ValidationSettings:
        if self.max_examples < self.min_examples:
            raise ValueError(
                f"max_examples={self.max_examples} is below min_examples={self.min_examples}: "
                "raise DRIFTLOOP_VALIDATION_MAX_EXAMPLES or lower DRIFTLOOP_VALIDATION_MIN_EXAMPLES"
            )
        return self

    @property
    def threshold(self) -> float:
        """The value of E[loss(challenger) - loss(champion)] the bounds are compared with."""
        return -self.margin if self.mode == "superiority" else self.margin


class ValidatorSettings(BaseSettings):
    """The validator worker's settings (env prefix ``DRIFTLOOP_VALIDATOR_``). How a challenger is judged
    (alpha, margin, loss, budget) is ``ValidationSettings`` (``DRIFTLOOP_VALIDATION_``)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_VALIDATOR_", extra="forbid")

    model_name: str = Field(default="pump-bearing-temp", description="registered model to validate")
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    labelled_topic: str = "driftloop.labelled"
    group_id: str = Field(default="driftloop-validator", description="consumer group of the labelled topic")
    state_dir: Path | None = Field(default=None, description="state folder; default <home>/validator")
    reset_state: bool = Field(
        default=False,
        description="move aside a state taken from another log, group or topic, and start from this "
        "log's committed offsets; without it such a state stops the validator",
    )

    poll_max_records: int = Field(default=2000, ge=1)
    poll_timeout_s: float = Field(default=0.2, ge=0)
    dedupe_window: int = Field(default=100_000, ge=1, description="example ids remembered for dedupe")
    registry_poll_s: float = Field(default=5.0, gt=0, description="look at the aliases this often")
    registry_retry_s: float = Field(
        default=5.0, gt=0, description="first wait after a registry failure (doubles each failure)"
    )
    registry_retry_max_s: float = Field(default=120.0, gt=0, description="longest wait between retries")
    topic_retry_s: float = Field(default=5.0, gt=0, description="wait between labelled-topic look-ups")
    state_interval_s: float = Field(
        default=5.0, gt=0, description="save the state, then commit the offsets, this often"
    )

    def state_path(self) -> Path:
        folder = self.state_dir or StateSettings().resolved_home() / "validator"
        return folder / f"{self.model_name}.state"
