"""The feedback service's settings (env prefix ``DRIFTLOOP_FEEDBACK_``). In production mode a token
that is empty, short, a placeholder or guessable refuses to start; no error ever shows the token."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_WORDS = frozenset(
    {
        "changeme", "changethis", "changeit", "secret", "token", "placeholder", "password", "passwd",
        "xxx", "todo", "tbd", "example", "default", "test", "dummy", "fixme", "replaceme", "insert", "your",
        "admin", "letmein", "qwerty", "abc",
    }
)  # fmt: skip
MIN_TOKEN_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 8
MIN_TOKEN_BITS = 40  # estimated from the token's own character frequencies


def token_weakness(token: str) -> str | None:
    """Why ``token`` is not a real secret, or None. Never includes the token."""
    if not token.strip():
        return "is empty"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters"
    letters = re.sub(r"[^a-z]", "", token.lower())
    if letters and _made_of_placeholders(letters) and len(re.sub(r"[a-z]", "", token.lower())) <= 8:
        return "is a placeholder (a word like 'changeme' or 'secret', possibly with digits)"
    if len(set(token)) < MIN_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_DISTINCT_CHARACTERS} distinct characters (like a repeated character)"
    if _bits(token) < MIN_TOKEN_BITS:
        return f"is too predictable (under {MIN_TOKEN_BITS} bits by its character frequencies)"
    return None


def _made_of_placeholders(letters: str) -> bool:
    """``letters`` is one or more placeholder words run together (``changemechangeme``)."""
    reachable = {0}
    for end in range(1, len(letters) + 1):
        if any(start in reachable and letters[start:end] in PLACEHOLDER_WORDS for start in range(end)):
            reachable.add(end)
    return len(letters) in reachable


def _bits(token: str) -> float:
    counts = Counter(token)
    n = len(token)
    return -sum(c * math.log2(c / n) for c in counts.values())


class FeedbackSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLOOP_FEEDBACK_", extra="ignore", hide_input_in_errors=True
    )

    mode: Literal["development", "production"] = "development"
    token: SecretStr = Field(
        default=SecretStr(""), description="bearer token; empty = no auth (development only)"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)
    feedback_topic: str = "driftloop.feedback"
    partitions: int = Field(default=4, ge=1, description="partitions of the feedback topic if it is created")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="larger bodies get 413")
    max_rows: int = Field(
        default=10_000, ge=1, description="more rows (truth values + readings) in one request get 413"
    )
    dedupe_window: int = Field(
        default=1_000_000, ge=0, description="record ids remembered to answer 'duplicate'"
    )
    ack_timeout_s: float = Field(default=10.0, gt=0, description="wait this long for the log to acknowledge")

    @model_validator(mode="after")
    def _refuse_weak_token(self) -> FeedbackSettings:
        weakness = token_weakness(self.token.get_secret_value())
        if self.mode == "production" and weakness is not None:
            raise ValueError(
                f"DRIFTLOOP_FEEDBACK_TOKEN {weakness}, and DRIFTLOOP_FEEDBACK_MODE=production: set a real "
                "secret (e.g. `openssl rand -hex 32`)"
            )
        return self
