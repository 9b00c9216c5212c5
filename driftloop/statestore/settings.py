"""Tuning of the log-backed state store (env prefix ``DRIFTLOOP_STATE_CHANGELOG_``). Which store, and
its topic, are ``DRIFTLOOP_STATE_STORE`` and ``DRIFTLOOP_STATE_TOPIC`` (``StateSettings``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChangelogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_STATE_CHANGELOG_", extra="ignore")

    chunk_bytes: int = Field(
        default=512 * 1024,
        ge=1024,
        description="largest chunk of a value per record (below the max message size of topic and client)",
    )
    partitions: int = Field(default=1, ge=1, description="partitions of the topic when the store creates it")
    write_retry_s: float = Field(
        default=120.0,
        gt=0,
        description="keep retrying a write that the brokers do not acknowledge for this long, then fail "
        "(the worker then commits nothing past the state stored before)",
    )
