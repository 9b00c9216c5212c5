"""The feedback API's settings: production refuses weak tokens, and no error shows the token."""

from __future__ import annotations

import pytest
from driftloop_feedback.api import FeedbackSettings
from driftloop_feedback.api.settings import token_weakness
from pydantic import SecretStr, ValidationError


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "is empty"),
        ("short-s3cret", "shorter than 16"),
        ("changeme123", "shorter than 16"),
        ("xxxxxxxxxxxxxxxx", "fewer than 8 distinct"),
        ("changeme12345678", "placeholder"),
        ("ChangeMe-ChangeMe-2024", "placeholder"),
        ("passwordpassword", "placeholder"),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", "fewer than 8 distinct"),
        ("abababababababababab", "fewer than 8 distinct"),
        ("aaaaaaaaabcdefgh", "too predictable"),
    ],
)
def test_production_refuses_a_weak_token_saying_why_and_never_showing_it(token: str, reason: str) -> None:
    with pytest.raises(ValidationError) as raised:
        FeedbackSettings(mode="production", token=SecretStr(token))
    message = str(raised.value)
    assert "DRIFTLOOP_FEEDBACK_TOKEN" in message and reason in message
    if token:
        assert token not in message


@pytest.mark.parametrize(
    "token", ["s3cr3t-token-for-tests-0123456789", "9f86d081884c7d659a2feaa0c55ad015", "Zq8!vR2#mK5@xL9$"]
)
def test_production_takes_a_real_token(token: str) -> None:
    assert token_weakness(token) is None
    FeedbackSettings(mode="production", token=SecretStr(token))


def test_development_takes_any_token() -> None:
    FeedbackSettings(token=SecretStr("changeme"))
