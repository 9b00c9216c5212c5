"""Where driftloop keeps its local state, and the defaults every part shares.

The embedded default keeps everything under one project-local state directory (``.driftloop`` in the
current directory unless ``DRIFTLOOP_HOME`` says otherwise): the MLflow sqlite store and artifacts, the
embedded event log, trained detector artifacts and run-time files (PIDs, ports, logs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StateSettings(BaseSettings):
    """Locations shared by every driftloop process on one machine (env prefix ``DRIFTLOOP_``)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLOOP_", extra="ignore")

    home: Path = Field(default=Path(".driftloop"), description="project-local state directory")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default sqlite under home"
    )
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; when unset the embedded event log is used"
    )
    state_store: Literal["directory", "log"] = Field(
        default="directory",
        description="where workers keep their state (driftloop.statestore): a local folder, or a "
        "compacted Kafka topic any replica on any node restores from (needs Kafka)",
    )
    state_topic: str = Field(default="driftloop.state", description="the log state store's topic")

    def resolved_home(self) -> Path:
        home = self.home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return home

    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.resolved_home() / 'mlflow.db'}"

    def artifact_root(self) -> Path:
        path = self.resolved_home() / "mlartifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def eventlog_dir(self) -> Path:
        path = self.resolved_home() / "eventlog"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run_dir(self) -> Path:
        path = self.resolved_home() / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path
