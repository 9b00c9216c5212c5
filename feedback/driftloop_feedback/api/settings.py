"""The feedback service's settings (env prefix ``DRIFTLOOP_FEEDBACK_``). In production mode an empty or
placeholder token refuses to start."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_TOKENS = frozenset(
    {"", "changeme", "change-me", "change_me", "changethis", "secret", "token", "placeholder", "xxx", "todo"}
)


class FeedbackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_FEEDBACK_", extra="ignore")

    mode: Literal["development", "production"] = "development"
    token: SecretStr = Field(
        default=SecretStr(""), description="bearer token; empty = no auth (development only)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    feedback_topic: str = "driftloop.feedback"
    partitions: int = Field(default=4, ge=1, description="partitions of the feedback topic if it is created")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_batch: int = Field(default=10_000, ge=1, description="more records in one request get 413")
    dedupe_window: int = Field(
        default=1_000_000, ge=0, description="record ids remembered to answer 'duplicate'"
    )
    ack_timeout_s: float = Field(default=10.0, gt=0, description="wait this long for the log to acknowledge")

    @model_validator(mode="after")
    def _refuse_placeholder_token(self) -> FeedbackSettings:
        token = self.token.get_secret_value().strip()
        if self.mode == "production" and (token.lower() in PLACEHOLDER_TOKENS or len(token) < 16):
            raise ValueError(
                "DRIFTLOOP_FEEDBACK_TOKEN is empty, a placeholder or shorter than 16 characters, and "
                "DRIFTLOOP_FEEDBACK_MODE=production: set a real secret (e.g. `openssl rand -hex 32`)"
            )
        return self
