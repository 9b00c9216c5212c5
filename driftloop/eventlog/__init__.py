"""The event log: one small interface, three implementations (Kafka, embedded on local disk, and
in-memory for unit tests).

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
from driftloop.eventlog.bulk import send_many
from driftloop.eventlog.delivery import CommitFailedError
from driftloop.eventlog.factory import open_event_log
from driftloop.eventlog.flushing import FlushBarrier, begin_flush
from driftloop.eventlog.memory import MemoryEventLog
from driftloop.eventlog.metrics import EventLogMetrics
from driftloop.eventlog.partitioner import murmur2, partition_for_key
from driftloop.eventlog.validation import InvalidRecordError, InvalidTopicError, RecordTooLargeError

__all__ = [
    "CommitFailedError",
    "Consumer",
    "Delivery",
    "EventLog",
    "EventLogError",
    "EventLogMetrics",
    "FlushBarrier",
    "Header",
    "InvalidRecordError",
    "InvalidTopicError",
    "MemoryEventLog",
    "Producer",
    "Record",
    "RecordMetadata",
    "RecordTooLargeError",
    "TopicPartition",
    "begin_flush",
    "murmur2",
    "open_event_log",
    "partition_for_key",
    "send_many",
]
