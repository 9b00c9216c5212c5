"""Open the event log the settings point at: Kafka when bootstrap servers are configured, otherwise
the embedded log under ``StateSettings.eventlog_dir()``. ``memory://`` as bootstrap servers gives an
in-memory log (tests only: it lives and dies with the process)."""

from __future__ import annotations

from driftloop.eventlog.base import EventLog
from driftloop.eventlog.metrics import EventLogMetrics
from driftloop.settings import StateSettings

MEMORY_URL = "memory://"


def open_event_log(
    settings: StateSettings | None = None, *, metrics: EventLogMetrics | None = None
) -> EventLog:
    """``metrics``: where to count records sent/refused/polled and commits (a registry of your own
    to expose them on your ``/metrics``); a fresh private one by default."""
    settings = settings or StateSettings()
    servers = (settings.kafka_bootstrap_servers or "").strip()
    if servers == MEMORY_URL:
        from driftloop.eventlog.memory import MemoryEventLog

        return MemoryEventLog(metrics=metrics)
    if servers:
        from driftloop.eventlog.kafka import KafkaEventLog

        return KafkaEventLog(servers, metrics=metrics)
    from driftloop.eventlog.embedded import EmbeddedEventLog

    return EmbeddedEventLog(settings.eventlog_dir(), metrics=metrics)
