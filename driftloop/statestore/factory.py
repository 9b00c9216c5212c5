"""Open the state store the settings pick: ``DRIFTLOOP_STATE_STORE=directory`` (default) or ``log``."""

from __future__ import annotations

from pathlib import Path

from driftloop.eventlog.base import EventLog
from driftloop.settings import StateSettings
from driftloop.statestore.base import StateStore, StateStoreError
from driftloop.statestore.directory import DirectoryStore


def open_state_store(
    log: EventLog, directory: Path, scope: str, settings: StateSettings | None = None
) -> StateStore:
    """A worker's store: ``directory`` (its local folder, used by the ``directory`` store) or the keys of
    ``scope`` (e.g. ``joiner/<group>``, used by the ``log`` store) in the changelog topic of ``log``'s
    Kafka cluster. The log store needs Kafka: the embedded log neither compacts nor keeps records
    beyond its retention, and serves one machine anyway, as the directory does."""
    settings = settings or StateSettings()
    if settings.state_store == "directory":
        return DirectoryStore(directory)
    from driftloop.eventlog.kafka import KafkaEventLog

    if not isinstance(log, KafkaEventLog):
        raise StateStoreError(
            f"DRIFTLOOP_STATE_STORE=log keeps state in a compacted Kafka topic, but this process runs on "
            f"the {getattr(log, 'backend', type(log).__name__)} event log: set "
            "DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS, or DRIFTLOOP_STATE_STORE=directory (state in a local "
            "folder: replicas on one machine, or a shared volume)"
        )
    from driftloop.statestore.kafka_changelog import KafkaChangelogStore

    return KafkaChangelogStore(log, settings.state_topic, scope)
