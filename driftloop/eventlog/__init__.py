"""The event log: one small interface, two implementations (Kafka, embedded on local disk).

Every arrow after serving is a topic. ``open_event_log`` picks Kafka when bootstrap servers are
configured and the embedded log otherwise.
"""

from driftloop.eventlog.base import (
    Consumer,
    Delivery,
    EventLog,
    EventLogError,
    Header,
    Producer,
    Record,
    RecordMetadata,
    TopicPartition,
)

__all__ = [
    "Consumer",
    "Delivery",
    "EventLog",
    "EventLogError",
    "Header",
    "Producer",
    "Record",
    "RecordMetadata",
    "TopicPartition",
]
