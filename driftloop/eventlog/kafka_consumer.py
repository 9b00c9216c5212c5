"""A member of a Kafka consumer group (kafka-python 3.0): offsets are committed only by ``commit``,
rebalances surface as :class:`CommitFailedError`, errors name the group and the brokers."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, TypeVar

import kafka
import kafka.errors as kerrors
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_compat, kafka_fetch
from driftloop.eventlog.base import EventLogError, Record, TopicPartition
from driftloop.eventlog.delivery import CommitFailedError
from driftloop.eventlog.kafka_retry import retrying

if TYPE_CHECKING:
    from driftloop.eventlog.kafka import KafkaEventLog

T = TypeVar("T")
_REBALANCED = (
    kerrors.CommitFailedError,
    kerrors.RebalanceInProgressError,
    kerrors.IllegalGenerationError,
    kerrors.UnknownMemberIdError,
)


def _ktp(tp: TopicPartition) -> KafkaTP:
    return KafkaTP(tp.topic, tp.partition)


class KafkaConsumer:
    """A member of a Kafka consumer group; offsets are committed only by :meth:`commit`."""

    def __init__(self, log: KafkaEventLog, group_id: str, topics: list[str], reset: str) -> None:
        self._log = log
        self.group_id = group_id
        s = log.settings
        self._consumer = log._connect(
            lambda: kafka.KafkaConsumer(
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset=reset,
                session_timeout_ms=int(s.session_timeout_s * 1000),
                heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
                max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
                fetch_max_wait_ms=100,
                max_partition_fetch_bytes=s.max_partition_fetch_bytes,
                # A subscribed topic created after this member joined is assigned at the next metadata
                # refresh: every 5 s rather than kafka-python's default of 5 minutes.
                metadata_max_age_ms=5000,
                **log._config,
            )
        )
        kafka_fetch.install(self._consumer)  # fetched records decoded straight into Records
        # Learn the topics' partitions before joining the group, so the first assignment covers them
        # (otherwise the assignor logs "No partition metadata for topic ..." and assigns nothing).
        for topic in topics:
            self._call(
                "metadata fetch", functools.partial(self._consumer.partitions_for_topic, topic), retry=True
            )
        self._consumer.subscribe(topics)
        self._closed = False

    def _call(self, what: str, fn: Callable[[], T], *, retry: bool = False) -> T:
        """``fn()`` with its errors named; ``retry`` for read-only requests (``kafka_retry``)."""
        try:
            return retrying(fn, self._log.settings.request_timeout_s) if retry else fn()
        except _REBALANCED as exc:
            raise CommitFailedError(
                f"group {self.group_id!r} rebalanced during {what}: these partitions now belong to another "
                "member, which re-reads them from the last commit (at-least-once). Poll again and carry on."
            ) from exc
        except (kerrors.KafkaError, AssertionError) as exc:
            raise EventLogError(
                f"{what} failed for group {self.group_id!r} on {self._log.bootstrap_servers}: {exc!r}"
            ) from exc

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        batches = self._call(
            "poll", lambda: self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        )
        out: list[Record] = []
        append = out.append
        for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
            topic, partition = tp.topic, tp.partition
            fetched = batches[tp]
            if fetched and type(fetched[0]) is Record:  # decoded by kafka_fetch already
                out.extend(fetched)
                self._log.metrics.polled_count(self._log.backend, self.group_id, topic, len(fetched))
                continue
            for r in fetched:
                # kafka-python hands out bytes already; bytes(b) of a bytes object is that object.
                headers = (
                    tuple((n, v if type(v) is bytes else bytes(v)) for n, v in r.headers) if r.headers else ()
                )
                value = r.value
                if type(value) is not bytes:
                    value = b"" if value is None else bytes(value)
                append(Record(topic, partition, r.offset, r.timestamp, r.key, value, headers))
            self._log.metrics.polled_count(self._log.backend, self.group_id, topic, len(batches[tp]))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        wanted = None
        if offsets is not None:
            wanted = {_ktp(tp): OffsetAndMetadata(int(o), "", -1) for tp, o in offsets.items()}
            if not wanted:
                return
        try:
            self._call("commit", lambda: self._consumer.commit(offsets=wanted))
        except CommitFailedError:
            self._log.metrics.commit(self._log.backend, self.group_id, "rebalanced")
            raise
        except EventLogError:
            self._log.metrics.commit(self._log.backend, self.group_id, "error")
            raise
        self._log.metrics.commit(self._log.backend, self.group_id, "ok")

    def committed(self, tp: TopicPartition) -> int | None:
        result = self._call("committed", lambda: self._consumer.committed(_ktp(tp)), retry=True)
        return None if result is None else int(result)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assignment():
            raise EventLogError(
                f"{tp} is not assigned to this consumer of group {self.group_id!r}; poll first so the "
                "group assigns partitions"
            )
        self._call("seek", lambda: self._consumer.seek(_ktp(tp), offset))

    def seek_to_time(self, timestamp_ms: int) -> None:
        tps = [_ktp(tp) for tp in self.assignment()]
        if not tps:
            return
        found = self._call(
            "offsets_for_times",
            lambda: self._consumer.offsets_for_times(dict.fromkeys(tps, timestamp_ms)),
            retry=True,
        )
        ends = self._call("end_offsets", lambda: self._consumer.end_offsets(tps), retry=True)
        for ktp in tps:
            hit = found.get(ktp)
            target = hit.offset if hit is not None else ends[ktp]
            self._call("seek", functools.partial(self._consumer.seek, ktp, target))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(t.topic, t.partition) for t in self._consumer.assignment()}

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        self._call("pause", lambda: self._consumer.pause(*[_ktp(tp) for tp in tps]))

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._call("resume", lambda: self._consumer.resume(*[_ktp(tp) for tp in tps]))

    def lag(self) -> dict[TopicPartition, int]:
        """End offset minus committed offset (or minus the first retained offset when none is committed).
        Three requests at most, whatever the number of partitions: one for every committed offset (the
        call ``committed`` makes per partition), one for the end offsets, one for the first offsets of
        partitions without a commit."""
        ktps = [_ktp(tp) for tp in sorted(self.assignment())]
        if not ktps:
            return {}
        coordinator = self._consumer._coordinator
        committed = self._call("committed", lambda: coordinator.fetch_committed_offsets(ktps), retry=True)
        ends = self._call("end_offsets", lambda: self._consumer.end_offsets(ktps), retry=True)
        missing = [ktp for ktp in ktps if committed.get(ktp) is None]
        starts = {}
        if missing:
            starts = self._call(
                "beginning_offsets", lambda: self._consumer.beginning_offsets(missing), retry=True
            )
        out: dict[TopicPartition, int] = {}
        for ktp in ktps:
            found = committed.get(ktp)
            base = int(found.offset) if found is not None else int(starts[ktp])
            out[TopicPartition(ktp.topic, ktp.partition)] = int(ends[ktp]) - base
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close(autocommit=False)
            kafka_compat.close_sockets(self._consumer)
