"""The state store on a compacted Kafka topic, as Kafka Streams keeps its state stores' changelogs.

Values are written as generations of chunks followed by a commit marker (``changelog``) with the
project's Kafka producer (``acks=all``, idempotent). Reading catches up: a consumer outside any group,
assigned every partition of the topic, reads from the beginning to the end offsets it asked for first;
``read`` returns the newest complete generation of the key. So whichever replica, on whichever node,
is assigned a shard reads the last value any replica wrote for it.

At start the topic must be compacted (``cleanup.policy=compact``): under ``delete`` retention would
remove state that was not rewritten for a while. A missing topic is created so (partitions from
``ChangelogSettings``, replication as ``DRIFTLOOP_KAFKA_REPLICATION_FACTOR``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import kafka
import kafka.errors as kerrors
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.structs import TopicPartition as KafkaTP

from driftloop.eventlog import kafka_compat
from driftloop.eventlog.base import EventLogError
from driftloop.eventlog.kafka import KafkaEventLog, KafkaProducer
from driftloop.eventlog.kafka_retry import retrying
from driftloop.eventlog.partitioner import partition_for_key
from driftloop.statestore.base import StateStoreError, check_key
from driftloop.statestore.changelog import ChangelogView, encode_deletion, encode_generation, marker_key
from driftloop.statestore.settings import ChangelogSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
COMPACT = "compact"


class KafkaChangelogStore:
    """The keys of one ``scope`` (e.g. ``joiner/<group>``) in the changelog ``topic`` of ``log``'s
    cluster. ``clock``/``sleep`` only pace write retries."""

    def __init__(
        self,
        log_: KafkaEventLog,
        topic: str,
        scope: str,
        settings: ChangelogSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.topic = topic
        self.scope = scope
        self.settings = settings or ChangelogSettings()
        self._servers = log_.bootstrap_servers
        self._kafka = log_.settings
        self._clock, self._sleep = clock, sleep
        limit = self._kafka.max_message_bytes - 1024
        if self.settings.chunk_bytes > limit:
            raise StateStoreError(
                f"DRIFTLOOP_STATE_CHANGELOG_CHUNK_BYTES={self.settings.chunk_bytes} leaves no room under "
                f"DRIFTLOOP_KAFKA_MAX_MESSAGE_BYTES={self._kafka.max_message_bytes}; use at most {limit}"
            )
        self._config = {"bootstrap_servers": self._servers.split(","), **self._kafka.client_config()}
        self.view = ChangelogView(scope)
        self._written: dict[str, tuple[int, str]] = {}  # key -> (seq, slot) of this writer's last write
        admin = self._connect("admin client", lambda: kafka.KafkaAdminClient(**self._config))
        try:
            self.partitions = self._ensure_compacted(admin)
        finally:
            admin.close()
            kafka_compat.close_sockets(admin)
        self._reader = self._connect(
            "changelog reader",
            lambda: kafka.KafkaConsumer(
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=max(
                    self._kafka.max_partition_fetch_bytes, 2 * self.settings.chunk_bytes
                ),
                **self._config,
            ),
        )
        self._tps = [KafkaTP(topic, p) for p in range(self.partitions)]
        self._reader.assign(self._tps)
        self._reader.seek_to_beginning(*self._tps)
        self._producer: KafkaProducer = log_.producer()
        self.catch_up()

    # -- the port ------------------------------------------------------------------------------------
    def where(self, key: str) -> str:
        return (
            f"key {marker_key(self.scope, check_key(key)).decode()} of topic {self.topic} on {self._servers}"
        )

    def read(self, key: str) -> bytes | None:
        check_key(key)
        self.catch_up()
        return self.view.values.get(key)

    def write(self, key: str, data: bytes) -> None:
        self.write_many({key: data})

    def write_many(self, items: Mapping[str, bytes]) -> None:
        if not items:
            return
        chunks: list[tuple[bytes, bytes]] = []
        markers: list[tuple[bytes, bytes]] = []
        written: dict[str, tuple[int, str]] = {}
        for key, data in items.items():
            generation, slot = self._next(check_key(key))
            parts, marker = encode_generation(
                self.scope, key, bytes(data), generation, slot, self.settings.chunk_bytes
            )
            chunks.extend(parts)
            markers.append(marker)
            written[key] = (generation.seq, slot)
        # The markers go out only once every chunk is acknowledged: a reader never applies half a value.
        self._send_acknowledged(chunks, "chunks")
        self._send_acknowledged(markers, "commit markers")
        self._written.update(written)

    def discard(self, key: str) -> str:
        """Write the value under ``<key>.discarded`` and a deletion marker for ``key``."""
        data = self.read(key)
        aside = f"{key}.discarded"
        if data is not None:
            self.write(aside, data)
        seq = max(self.view.seqs.get(key, 0), self._written.get(key, (0, ""))[0]) + 1
        self._send_acknowledged([encode_deletion(self.scope, key, seq)], "deletion marker")
        self._written[key] = (seq, "")
        return self.where(aside)

    def close(self) -> None:
        self._producer.close()
        self._reader.close()
        kafka_compat.close_sockets(self._reader)

    # -- reading -------------------------------------------------------------------------------------
    def catch_up(self) -> None:
        """Apply every record up to the end offsets as they are now."""
        ends = self._retrying("reading the end offsets", lambda: self._reader.end_offsets(self._tps))
        deadline = self._clock() + self._kafka.request_timeout_s
        while True:
            behind = [tp for tp in self._tps if self._position(tp) < ends[tp]]
            if not behind:
                return
            if self._clock() > deadline:
                raise StateStoreError(
                    f"cannot read state topic {self.topic} on {self._servers} to its end within "
                    f"{self._kafka.request_timeout_s:g} s (partitions behind: "
                    f"{', '.join(str(tp.partition) for tp in behind)}); check the brokers"
                )
            try:
                batches = self._reader.poll(timeout_ms=200, max_records=10_000)
            except kerrors.KafkaError as exc:
                raise StateStoreError(
                    f"reading state topic {self.topic} on {self._servers} failed: {exc}"
                ) from exc
            got = False
            for records in batches.values():
                for record in records:
                    self.view.apply(record.key, record.value)
                    got = True
            if got:
                deadline = self._clock() + self._kafka.request_timeout_s

    def _position(self, tp: KafkaTP) -> int:
        return int(self._retrying("reading a position", lambda: self._reader.position(tp)))

    # -- writing -------------------------------------------------------------------------------------
    def _next(self, key: str) -> tuple[Any, str]:
        generation, slot = self.view.next_generation(key)
        mine = self._written.get(key)
        if mine is not None and mine[0] >= generation.seq:  # written here since the last catch-up
            generation = type(generation).after(mine[0])
            slot = "b" if mine[1] == "a" else "a"
        return generation, slot

    def _send_acknowledged(self, records: list[tuple[bytes, bytes]], what: str) -> None:
        """Send and wait until acknowledged; a failed attempt is sent again (the same records: a reader
        applies them once) until ``write_retry_s`` has passed, then ``StateStoreError``."""
        deadline = self._clock() + self.settings.write_retry_s
        delay = 0.5
        while True:
            try:
                for key, value in records:
                    self._producer.send(
                        self.topic,
                        value,
                        key=key,
                        partition=partition_for_key(key.split(b"\0")[0], self.partitions),
                    )
                self._producer.flush()
                return
            except EventLogError as exc:
                if self._clock() + delay > deadline:
                    raise StateStoreError(
                        f"state not stored: {len(records)} {what} to topic {self.topic} on {self._servers} "
                        f"were not acknowledged within {self.settings.write_retry_s:g} s ({exc}); nothing "
                        "past the state stored before is committed. Check the brokers"
                    ) from exc
                log.warning(
                    "state store: %s to %s not acknowledged (%s); retrying in %.1f s",
                    what,
                    self.topic,
                    exc,
                    delay,
                )
            self._sleep(delay)
            delay = min(2 * delay, 5.0)

    # -- the topic -----------------------------------------------------------------------------------
    def _ensure_compacted(self, admin: Any) -> int:
        """The topic's partition count, after checking it is compacted (creating it so if absent)."""
        topics = self._retrying("listing topics", admin.list_topics)
        if self.topic not in topics:
            spec = NewTopic(
                self.topic,
                num_partitions=self.settings.partitions,
                replication_factor=self._kafka.replication_factor,
                topic_configs={"cleanup.policy": COMPACT},
            )
            with contextlib.suppress(kerrors.TopicAlreadyExistsError):
                self._retrying(
                    f"creating state topic {self.topic}",
                    lambda: admin.create_topics([spec], wait_for_metadata=True),
                )
            log.info("state store: created compacted topic %s on %s", self.topic, self._servers)
        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic)
        described = self._retrying(
            f"describing state topic {self.topic}",
            lambda: admin.describe_configs([resource], config_filter="all"),
        )
        policy = _config_value(described, self.topic, "cleanup.policy")
        if policy is None or {p.strip() for p in policy.split(",")} != {COMPACT}:
            raise StateStoreError(
                f"state topic {self.topic} on {self._servers} has cleanup.policy={policy}, not compact: "
                "its retention would delete state that was not rewritten for a while. Set it "
                f"(kafka-configs.sh --alter --entity-type topics --entity-name {self.topic} "
                "--add-config cleanup.policy=compact, or the KafkaTopic's spec.config), or name another "
                "topic with DRIFTLOOP_STATE_TOPIC (the store creates a missing one compacted)"
            )
        (meta,) = self._retrying(
            f"describing state topic {self.topic}", lambda: admin.describe_topics([self.topic])
        )
        return len(meta["partitions"])

    def _connect(self, what: str, make: Callable[[], T]) -> T:
        try:
            return make()
        except kerrors.KafkaError as exc:
            raise StateStoreError(
                f"state store: cannot reach Kafka at {self._servers} for the {what} "
                f"({type(exc).__name__}: {exc}); check DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS and that the "
                "brokers run"
            ) from exc

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        try:
            return retrying(call, self._kafka.request_timeout_s)
        except kerrors.KafkaError as exc:
            raise StateStoreError(f"state store: {what} on {self._servers} failed: {exc}") from exc


def _config_value(described: Any, topic: str, name: str) -> str | None:
    """One config value out of ``describe_configs``' answer ({type: {name: {key: {value, ...}}}})."""
    for by_name in (described or {}).values():
        entry = (by_name or {}).get(topic, {}).get(name)
        if isinstance(entry, dict):
            value = entry.get("value", entry.get("config_value"))
            return None if value is None else str(value)
        if entry is not None:
            return str(entry)
    return None
