"""A joiner stage: one consumer-group member that feeds records to per-partition ``JoinShard``s and
checkpoints them.

Checkpoint order (the durability argument): (1) encode each changed shard's snapshot (state + next
offset of each of its input partitions) and send every output produced so far; (2) once the log has
acknowledged all of those outputs, write the snapshots atomically; (3) then commit their offsets to
the group. Step (2) waits on a flush barrier (``begin_flush``) without stopping the stage: it goes on
joining while the producer sends, and finishes the checkpoint in a later step, when the barrier is
done (at most one checkpoint is in progress; ``checkpoint()`` does all three at once). A snapshot is
written only for a shard the stage still owns when it is written. After a crash at any point the shard
restarts from its last written snapshot and re-reads from the offsets stored in it (records below them
are skipped; a snapshot is applied only to the log, group, topics and partition it records:
``_load_bound``), so nothing acknowledged as input is lost; outputs produced after that snapshot are
produced again with the same ``example_id`` and content (at-least-once on the topic, deduplicated by
``example_id`` in the trainer's view: ``driftloop_feedback.labelled.dedupe``).
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
from driftloop_feedback.errors import SnapshotError
from driftloop_feedback.join.breaker import SamplingBreaker
from driftloop_feedback.join.rules import JoinCounters
from driftloop_feedback.join.settings import JoinerSettings
from driftloop_feedback.join.shard import JoinShard, TruthItem
from driftloop_feedback.join.snapshots import (
    SnapshotSourceError,
    SnapshotStore,
    StateSource,
    source_problem,
)
from driftloop_feedback.labelled_batch import encode_tuples
from driftloop_feedback.records import (
    TRUTH_PREFIX,
    PredictionRow,
    TruthRecord,
    UndecodableRecord,
    decode_feedback,
    decode_truth_fields,
)

from driftloop.eventlog import (
    CommitFailedError,
    Consumer,
    Delivery,
    EventLog,
    EventLogError,
    FlushBarrier,
    Producer,
    Record,
    TopicPartition,
    begin_flush,
    send_many,
)
from driftloop.seldon_log import MalformedLogEvent, parse_event
from driftloop.settings import StateSettings
from driftloop.statestore import DirectoryStore, open_state_store

log = logging.getLogger(__name__)
Clock = Callable[[], float]
_topic_partition = operator.attrgetter("topic", "partition")


def default_state_dir() -> Path:
    return StateSettings().resolved_home() / "feedback" / "joiner"


@dataclass
class StageStats:
    counters: JoinCounters = field(default_factory=JoinCounters)
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    pending: int = 0
    paused: bool = False
    checkpoints: int = 0
    discarded_snapshots: int = 0  # taken from another source, moved aside under reset_state


class JoinStage:
    """``request``: consumes the keyed request log + feedback; ``asset``: forwarded predictions +
    telemetry + feedback readings. Both emit labelled examples; ``request`` forwards asset-join rows."""

    def __init__(
        self, name: str, log_: EventLog, settings: JoinerSettings, *, clock: Clock = time.time
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        s = settings
        if name == "request":
            self.topics = [s.keyed_log_topic, s.feedback_topic]
            self.prediction_topics = {s.keyed_log_topic}
        elif name == "asset":
            self.topics = [s.predictions_topic, s.telemetry_topic, s.feedback_topic]
            self.prediction_topics = {s.predictions_topic}
        else:
            raise ValueError(f"unknown join stage {name!r}; use 'request' or 'asset'")
        # The request join's shards are partitions of topics keyed by request id, as is the labelled
        # topic: with equal counts, a shard's examples belong on the shard's own partition, which saves
        # hashing every key again (the key is still set on each record).
        self._labelled_on_shard = name == "request" and (
            log_.partitions_for(s.labelled_topic) == log_.partitions_for(s.keyed_log_topic)
        )
        self.group_id = f"{s.group_id}-{name}"
        # In request mode no row is ever routed to the asset join: that stage would read the telemetry
        # and feedback topics for nothing, so it stays idle (no consumer, no producer, no thread).
        self.active = not (name == "asset" and s.mode == "request")
        self.consumer: Consumer = _IdleConsumer()
        self.producer: Producer = _IdleProducer()
        self._log = log_
        # DRIFTLOOP_STATE_STORE: the group's folder, or its keys in the compacted state topic, one scope
        # per stage (``joiner/<group>/<stage>``: a stage reads and keeps only its own snapshots); an idle
        # stage opens no log store.
        state_dir = (s.state_dir or default_state_dir()) / s.group_id
        self.snapshots = SnapshotStore(
            open_state_store(log_, state_dir, f"joiner/{s.group_id}/{name}")
            if self.active
            else DirectoryStore(state_dir)
        )
        # What the snapshots are bound to (``source``): asked once, as asking costs a request to Kafka.
        self._log_identity = ""
        self._partition_count = 0
        if self.active:
            self._log_identity = log_.identity()
            self._partition_count = log_.partitions_for(self.topics[0])
            self.consumer = log_.consumer(self.group_id, self.topics)
            self.producer = log_.producer()
        self.shards: dict[int, JoinShard] = {}
        self.next_offsets: dict[TopicPartition, int] = {}
        self.dirty: set[int] = set()
        self.in_flight = 0
        self.breaker = SamplingBreaker(s.breaker_enabled, s.breaker_lag, s.breaker_keep_fraction)
        self.stats = StageStats()
        self._last_checkpoint = clock()
        # The least time between two checkpoints: the last one's state copy over ``checkpoint_max_share``
        # (a large state is copied less often; the interval and the in-flight bound apply on top).
        self._checkpoint_pause = 0.0
        self._last_timer = clock()
        self._last_lag = float("-inf")
        self._paused: set[TopicPartition] = set()
        self._checkpointing: _Checkpoint | None = None  # begun, waiting for its outputs' flush

    # -- one iteration -------------------------------------------------------------------------
    def step(self, poll_timeout_s: float = 0.2) -> int:
        if not self.active:
            return 0
        records = self.consumer.poll(poll_timeout_s, self.settings.poll_max_records)
        records = self._sync_assignment(records)
        self._dispatch(records)
        now = self.clock()
        if now - self._last_timer >= self.settings.timer_interval_s:
            # Caught up (nothing polled): wall-clock time moves the shards on; otherwise log time does.
            for p, shard in self.shards.items():
                shard.on_timer(now if not records else shard.now)
                self.dirty.add(p)
            self._last_timer = now
        self._collect_outputs()
        self._finish_checkpoint(wait=False)
        since = now - self._last_checkpoint
        if since >= self._checkpoint_pause and (
            self.in_flight >= self.settings.max_in_flight or since >= self.settings.checkpoint_interval_s
        ):
            self._begin_checkpoint()
        return len(records)

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()
        self.checkpoint()

    def checkpoint(self) -> None:
        """A whole checkpoint now: outputs flushed, snapshots written, offsets committed."""
        if not self.active:
            return
        self._begin_checkpoint()
        self._finish_checkpoint(wait=True)

    def _begin_checkpoint(self) -> None:
        """Encode the changed shards' snapshots and put a flush barrier behind every output so far."""
        self._finish_checkpoint(wait=True)  # one checkpoint in progress at a time
        self._collect_outputs()
        owned_partitions = {tp.partition for tp in self.consumer.assignment()}
        encoded: dict[int, bytes] = {}
        offsets: dict[int, dict[TopicPartition, int]] = {}
        copying = time.perf_counter()
        for p in sorted(self.dirty):
            shard = self.shards.get(p)
            if shard is None or p not in owned_partitions:
                continue  # revoked since the last poll: its new owner writes its snapshots now
            offsets[p] = {tp: o for tp, o in self.next_offsets.items() if tp.partition == p}
            encoded[p] = self.snapshots.encode(
                {"source": self.source(p).as_dict(), "offsets": offsets[p], "shard": shard.snapshot()}
            )
        self._checkpoint_pause = (time.perf_counter() - copying) / self.settings.checkpoint_max_share
        barrier = begin_flush(self.producer)  # raises when a flush fails: the shards stay dirty
        self.dirty.clear()
        self.in_flight = 0
        self._checkpointing = _Checkpoint(encoded, offsets, barrier)
        self._last_checkpoint = self.clock()

    def _finish_checkpoint(self, *, wait: bool) -> None:
        """Once the begun checkpoint's outputs are acknowledged: write the snapshots of the shards still
        owned, then commit their offsets. Not before (``wait=False`` returns at once if they are not)."""
        pending = self._checkpointing
        if pending is None:
            return
        try:
            if not wait and not pending.barrier.done():
                return
            pending.barrier.wait()
        except EventLogError:  # an output was not acknowledged: nothing is written, the next one is
            self._checkpointing = None
            self.dirty.update(pending.encoded)
            raise
        self._checkpointing = None
        owned = self.consumer.assignment()
        owned_partitions = {tp.partition for tp in owned}
        # A partition revoked in a poll since the checkpoint began has a new owner, which may have
        # loaded the last written snapshot already: this one must not replace it.
        encoded = {p: data for p, data in pending.encoded.items() if p in owned_partitions}
        try:
            self.snapshots.write(self.name, encoded)
        except SnapshotError:  # not stored: nothing is committed, and the next checkpoint writes them again
            self.dirty.update(encoded)
            raise
        commits = {tp: o for p in encoded for tp, o in pending.offsets[p].items() if tp in owned}
        try:
            if commits:
                self.consumer.commit(commits)
        except CommitFailedError as exc:
            log.warning("%s stage: %s", self.name, exc)
        self.stats.checkpoints += 1
        self._refresh_stats()

    def close(self) -> None:
        if self.active:
            self.consumer.close()
            self.producer.close()
        self.snapshots.close()

    # -- internals -----------------------------------------------------------------------------
    def _sync_assignment(self, records: list[Record]) -> list[Record]:
        owned = self.consumer.assignment()
        partitions = {tp.partition for tp in owned}
        for p in [p for p in self.shards if p not in partitions]:
            del self.shards[p]  # revoked: the new owner resumes from the last snapshot
            self.dirty.discard(p)
            for tp in [tp for tp in self.next_offsets if tp.partition == p]:
                del self.next_offsets[tp]
        seeked: set[TopicPartition] = set()
        for p in sorted(partitions - set(self.shards)):
            saved = self._load_bound(p)
            if saved is None:
                self.shards[p] = JoinShard(self.settings.rules(), self.settings.tensor_names())
                continue
            self.shards[p] = JoinShard.restore(
                saved["shard"], self.settings.rules(), self.settings.tensor_names()
            )
            for tp, offset in saved["offsets"].items():
                if tp in owned:
                    self.next_offsets[tp] = offset
                    self.consumer.seek(tp, offset)
                    seeked.add(tp)
            log.info("%s stage: shard %d restored (%d pending)", self.name, p, len(self.shards[p].store))
        self._apply_backpressure(owned)
        # Records of a re-positioned partition in this poll are read again from the snapshot's offset;
        # partitions the snapshot does not cover had nothing processed, so their records stand.
        keep = {(tp.topic, tp.partition) for tp in owned if tp not in seeked}
        polled = set(map(_topic_partition, records))  # in C: no TopicPartition per record
        if polled <= keep:
            return records  # the usual case: every record stands
        return [r for r in records if (r.topic, r.partition) in keep]

    def source(self, partition: int) -> StateSource:
        """What this stage's shard ``partition`` reads: recorded in its snapshots."""
        return StateSource(
            log=self._log_identity,
            group=self.group_id,
            topics=tuple(self.topics),
            partitions=self._partition_count,
            partition=partition,
        )

    def _load_bound(self, p: int) -> dict[str, Any] | None:
        """Shard ``p``'s snapshot, if it was taken from what this stage reads. One taken elsewhere
        stops the stage (``SnapshotSourceError``), or with ``reset_state`` is moved aside (the shard
        starts empty, from the group's committed offsets in this log): never are its offsets applied
        here, which would skip input (or read it twice)."""
        saved = self.snapshots.load(self.name, p)
        if saved is None:
            return None
        expected = self.source(p)
        ends: dict[str, dict[int, int]] = {}

        def end_offset(tp: TopicPartition) -> int:
            if tp.topic not in ends:
                ends[tp.topic] = self._log.end_offsets(tp.topic)
            return ends[tp.topic].get(tp.partition, 0)

        problem = source_problem(saved, expected, end_offset, self.consumer.committed)
        path = self.snapshots.where(self.name, p)
        if problem is None:
            if saved["source"] is None:  # vouched for by this log: bound to it at the next checkpoint
                self.dirty.add(p)
                log.warning(
                    "%s stage: snapshot %s had no source; adopted for %s", self.name, path, expected.log
                )
            return saved
        if not self.settings.reset_state:
            raise SnapshotSourceError(
                f"joiner snapshot {path} does not belong to the log and topics this joiner reads: "
                f"{problem}. Its offsets mean nothing here, so the joiner stops rather than skip input. "
                "Run the joiner against the log the snapshot was taken from; or give it a state "
                "directory of its own for this log (DRIFTLOOP_JOINER_STATE_DIR, or another "
                "DRIFTLOOP_HOME); or set DRIFTLOOP_JOINER_RESET_STATE=true to move such snapshots aside "
                "(to *.discarded: the predictions pending in them are not labelled) and start their "
                "shards from this log's committed offsets"
            )
        aside = self.snapshots.discard(self.name, p)
        self.dirty.add(p)  # the next checkpoint writes a snapshot bound to this log
        self.stats.discarded_snapshots += 1
        log.warning(
            "%s stage: discarded snapshot %s (reset_state is set; moved to %s): shard %d starts empty, "
            "from the committed offsets of %s, as the snapshot does not belong to that log: %s",
            self.name,
            path,
            aside,
            p,
            expected.log,
            problem,
        )
        return None

    def _dispatch(self, records: list[Record]) -> None:
        """Feed polled records to their shards. Records come in runs of one partition, in offset
        order; per run, the snapshot's offset is looked up once and the next offset is written once.
        A run of truth records goes to the shard in one call (``_on_truths``)."""
        truths = self.settings.feedback_topic if self.name == "request" else None
        for (topic, partition), group in groupby(records, _topic_partition):
            run = list(group)
            tp = TopicPartition(topic, partition)
            floor = self.next_offsets.get(tp, 0)
            shard = self.shards[partition]
            self.dirty.add(partition)
            if run[0].offset < floor:  # partly covered by the snapshot this shard was restored from
                run = [r for r in run if r.offset >= floor]
                if not run:
                    continue
            if topic == truths:
                self.next_offsets[tp] = self._on_truths(shard, run, tp) + 1
                continue
            handle = self._handler(topic)
            last = -1
            try:
                for record in run:
                    last = record.offset
                    try:
                        handle(shard, record)
                    except (MalformedLogEvent, UndecodableRecord) as exc:
                        shard.counters.malformed += 1
                        log.warning("%s stage: skipped malformed record %s@%d: %s", self.name, tp, last, exc)
            finally:
                if last >= 0:
                    self.next_offsets[tp] = last + 1

    def _on_truths(self, shard: JoinShard, records: list[Record], tp: TopicPartition) -> int:
        """The request join's run of feedback records: truth records decoded here, field by field, and
        handed to the shard in one call per stretch of truths; other records (readings) as
        ``_on_feedback``, in their place. Returns the last offset."""
        loads = orjson.loads
        items: list[TruthItem] = []
        append = items.append
        offset = -1
        for record in records:
            offset = record.offset
            value = record.value
            if value.startswith(TRUTH_PREFIX):
                try:
                    data = loads(value)
                    append(
                        (
                            str(data["request_id"]),
                            int(data["row"]),
                            float(data["truth"]),
                            float(data.get("received_at", 0.0)),
                            record.timestamp_ms / 1000.0,
                        )
                    )
                    continue
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    error: Exception = UndecodableRecord(
                        f"not a truth record: {exc!r}; value={value[:200]!r}"
                    )
            else:
                if items:  # the truths before it first: records are handled in their order
                    shard.on_truths(items)
                    items = []
                    append = items.append
                try:
                    self._on_feedback(shard, record)
                    continue
                except UndecodableRecord as exc:
                    error = exc
            shard.counters.malformed += 1
            log.warning("%s stage: skipped malformed record %s@%d: %s", self.name, tp, offset, error)
        if items:
            shard.on_truths(items)
        return offset

    def _handler(self, topic: str) -> Callable[[JoinShard, Record], None]:
        if topic == self.settings.keyed_log_topic:
            return self._on_log_event
        if topic == self.settings.predictions_topic:
            return self._on_prediction
        return self._on_feedback

    def _on_log_event(self, shard: JoinShard, record: Record) -> None:
        event = parse_event(record.headers, record.value)
        if not self.breaker.drop(event.request_id):
            shard.on_log_event(event, record.timestamp_ms / 1000.0)

    def _on_prediction(self, shard: JoinShard, record: Record) -> None:
        row = PredictionRow.decode(record.value)
        if not self.breaker.drop(row.request_id):
            shard.on_prediction(row, record.timestamp_ms / 1000.0)

    def _on_feedback(self, shard: JoinShard, record: Record) -> None:
        value = record.value
        if value.startswith(TRUTH_PREFIX):  # written by TruthRecord.encode: decoded here, no object
            if self.name == "asset":
                return  # truth by request id is the request join's; skip it without decoding
            try:
                fields = decode_truth_fields(orjson.loads(value))
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise UndecodableRecord(f"not a truth record: {exc!r}; value={value[:200]!r}") from exc
            shard.on_truth_fields(*fields, record.timestamp_ms / 1000.0)
            return
        item = decode_feedback(value)
        if isinstance(item, TruthRecord):
            if self.name == "request":
                shard.on_truth(item, record.timestamp_ms / 1000.0)
        elif self.name == "asset":
            shard.on_reading(item, record.timestamp_ms / 1000.0)

    def _collect_outputs(self) -> None:
        s = self.settings
        send = self.producer.send
        for p, shard in self.shards.items():
            examples = shard.drain_fields()
            # batch records (``labelled_batch``: columnar, capped in rows and bytes), without a key
            records: list[tuple[bytes | None, bytes]] = [(None, v) for v in encode_tuples(examples)]
            if records and self._labelled_on_shard:
                # One bulk call per shard: the shard's examples belong on the shard's own partition.
                send_many(self.producer, s.labelled_topic, records, partition=p)
            else:
                for key, value in records:
                    send(s.labelled_topic, value, key=key)
            self.in_flight += len(examples)
            for row in shard.drain_forwarded():
                send(s.predictions_topic, row.encode(), key=(row.asset_id or "").encode())
                self.in_flight += 1

    def _apply_backpressure(self, owned: set[TopicPartition]) -> None:
        pending = sum(len(shard.store) for shard in self.shards.values())
        inputs = {tp for tp in owned if tp.topic in self.prediction_topics}
        if pending >= self.settings.max_pending and not self._paused:
            self._paused = inputs
            self.consumer.pause(inputs)
            log.warning(
                "%s stage: %d pending predictions >= max_pending; pausing %s",
                self.name,
                pending,
                sorted(inputs),
            )
        elif self._paused and pending < self.settings.max_pending * 0.8:
            self.consumer.resume(self._paused)
            log.info("%s stage: pending back to %d; resuming prediction inputs", self.name, pending)
            self._paused = set()

    def _refresh_stats(self) -> None:
        total = JoinCounters()
        for shard in self.shards.values():
            total.add(shard.counters)
        self.stats.counters = total
        self.stats.pending = sum(len(shard.store) for shard in self.shards.values())
        self.stats.paused = bool(self._paused)
        now = self.clock()
        if now - self._last_lag >= self.settings.lag_interval_s:
            # Lag costs requests to the log (tens of ms on a busy broker): at most once per interval.
            self._last_lag = now
            self.stats.lag = self.consumer.lag()
            lag = sum(v for tp, v in self.stats.lag.items() if tp.topic in self.prediction_topics)
            self.breaker.observe(lag)


@dataclass
class _Checkpoint:
    """A begun checkpoint: the snapshots to write once ``barrier`` (its outputs' flush) is done."""

    encoded: dict[int, bytes]  # shard -> snapshot bytes
    offsets: dict[int, dict[TopicPartition, int]]  # shard -> the next offsets in its snapshot
    barrier: FlushBarrier


class _IdleConsumer:
    """The consumer of a stage that has nothing to do in this join mode: subscribed to nothing."""

    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        return []

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        return None

    def committed(self, tp: TopicPartition) -> int | None:
        return None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        raise EventLogError(f"{tp} is not assigned: this stage is idle in this join mode")

    def seek_to_time(self, timestamp_ms: int) -> None:
        return None

    def assignment(self) -> set[TopicPartition]:
        return set()

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        return None

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        return None

    def lag(self) -> dict[TopicPartition, int]:
        return {}

    def close(self) -> None:
        return None


class _IdleProducer:
    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | str]] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Delivery:
        raise EventLogError("this joiner stage is idle in this join mode and sends nothing")

    def flush(self, timeout_s: float | None = None) -> None:
        return None

    def close(self) -> None:
        return None
