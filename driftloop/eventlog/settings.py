"""Typed settings of the two event-log implementations.

Kafka: env prefix ``DRIFTLOOP_KAFKA_`` (``DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS`` is the switch that
selects Kafka at all, read by :class:`driftloop.settings.StateSettings`). Embedded log: env prefix
``DRIFTLOOP_EVENTLOG_``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.eventlog.validation import DEFAULT_MAX_MESSAGE_BYTES

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


class KafkaSettings(BaseSettings):
    """How driftloop talks to a Kafka cluster; TLS/SASL options go straight to kafka-python."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_KAFKA_", extra="ignore")

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = Field(default=None, description="SASL PLAIN/SCRAM user name")
    password: SecretStr | None = Field(default=None, description="SASL PLAIN/SCRAM password")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle that signed the brokers' certs")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(default=None, description="client private key (mutual TLS)")
    ssl_password: SecretStr | None = Field(default=None, description="password of the client key")
    ssl_check_hostname: bool = True
    client_id: str = "driftloop"
    connect_timeout_s: float = Field(default=5.0, gt=0, description="give up reaching the brokers after")
    request_timeout_s: float = Field(default=30.0, gt=0)
    delivery_timeout_s: float = Field(default=120.0, gt=0, description="retry a send for at most this")
    linger_ms: int = Field(default=5, ge=0, description="batch sends for up to this many ms")
    batch_size_bytes: int = Field(
        default=256 * 1024,
        gt=0,
        description="largest producer batch per partition (kafka-python's default 16 KiB sends tiny batches)",
    )
    max_partition_fetch_bytes: int = Field(
        default=1024 * 1024, gt=0, description="consumers: most bytes fetched per partition per request"
    )
    session_timeout_s: float = Field(default=10.0, gt=0, description="group member declared dead after")
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    max_poll_interval_s: float = Field(default=300.0, gt=0)
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    replication_factor: int = Field(default=-1, description="for create_topic; -1 = broker default")

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(
                f"DRIFTLOOP_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "DRIFTLOOP_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI)"
            )
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                f"DRIFTLOOP_KAFKA_SASL_MECHANISM is set but DRIFTLOOP_KAFKA_SECURITY_PROTOCOL is "
                f"{self.security_protocol}; use SASL_SSL (or SASL_PLAINTEXT)"
            )
        needs_password = self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
        if needs_password and (not self.username or self.password is None):
            raise ValueError(
                f"SASL {self.sasl_mechanism} needs DRIFTLOOP_KAFKA_USERNAME and DRIFTLOOP_KAFKA_PASSWORD"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"DRIFTLOOP_KAFKA_{name.upper()}={path} is not a readable file")
        return self

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments shared by producer, consumer and admin client."""
        config: dict[str, Any] = {
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
            "request_timeout_ms": int(self.request_timeout_s * 1000),
            # reconnect quickly after a broker restart (kafka-python's default backs off to 30 s)
            "reconnect_backoff_max_ms": 1000,
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.username
            config["sasl_plain_password"] = self.password.get_secret_value() if self.password else None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name) is not None:
                    config[name] = str(getattr(self, name))
            if self.ssl_password is not None:
                config["ssl_password"] = self.ssl_password.get_secret_value()
        return config


class EmbeddedSettings(BaseSettings):
    """The embedded (SQLite, WAL) log shared by the processes of one machine."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_EVENTLOG_", extra="ignore")

    session_timeout_s: float = Field(
        default=30.0, gt=0, description="a group member that has not polled for this long is declared dead"
    )
    retention_s: float | None = Field(default=7 * 24 * 3600.0, description="drop records older; None keeps")
    retention_bytes: int | None = Field(
        default=1024**3, description="per partition: drop the oldest records above this; None keeps"
    )
    retention_check_s: float = Field(
        default=60.0, gt=0, description="how often a producer enforces retention"
    )
    max_message_bytes: int = Field(default=DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    poll_interval_s: float = Field(default=0.005, gt=0, description="idle poll back-off, start")
    busy_timeout_s: float = Field(default=30.0, gt=0, description="wait this long for another process's lock")
