"""The trainer worker: labelled examples in, a challenger learning them once, candidates out.

One ``step``: poll the labelled topic, read the poll at once (``intake.read_poll``: batch records as
columns, JSON records decoded in bulk, each example kept once by ``LabelledDeduper``, checked as
arrays), learn in mini-batches (slices of the poll; test-then-train, replay mixed in), read drift
events, cut a candidate when the policy says so, checkpoint when due, retry registrations that failed.

Exactly once, across crashes. The checkpoint holds the model *and* the next offset of every partition
read (plus the deduper's window and the replay buffer); a checkpoint first learns whatever is still
batched, so its model has learned exactly the records below its offsets. Offsets are committed to the
group only after the checkpoint is durable. After ``kill -9`` the trainer loads its checkpoint and
seeks each partition to the offset in it, whatever the group had committed: records learned before
the checkpoint are not read again, records after it are read and learned by the restored model.

Waiting, not crashing: without a champion (nothing registered yet) or a labelled topic (no joiner has
run yet) the worker says so and looks again later; when the registry is unreachable, candidates stay
in the checkpoint and their registration is retried. The trainer never moves the ``champion`` alias.
"""

from __future__ import annotations

import gc
import logging
import pickle
import time
import uuid
from collections.abc import Callable
from functools import partial
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import orjson

from driftloop.eventlog import CommitFailedError, Consumer, EventLog, EventLogError, Record, TopicPartition
from driftloop.eventlog.state_source import StateSource, end_offsets_of, refusal, source_problem
from driftloop.statestore import open_state_store
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.learn.candidates import (
    Candidate,
    CandidateRegistrar,
    CandidateRegistry,
    estimator_params,
)
from driftloop_feedback.learn.challenger import Challenger
from driftloop_feedback.learn.champion import (
    ChampionRegistry,
    ChampionUnavailable,
    current_version,
    load_champion,
)
from driftloop_feedback.learn.checkpoint import CheckpointStore
from driftloop_feedback.learn.errors import CheckpointSourceError
from driftloop_feedback.learn.gate import CutGate
from driftloop_feedback.learn.hold import HoldRegistry
from driftloop_feedback.learn.intake import Rows, read_poll
from driftloop_feedback.learn.metrics import TrainerMetrics
from driftloop_feedback.learn.policy import CandidatePolicy, DriftEvent, Trigger
from driftloop_feedback.learn.replay import ReplayBuffer
from driftloop_feedback.learn.settings import TrainerSettings
from driftloop_feedback.learn.state import DIGEST_MOD, TrainerState, digest_of
from driftloop_feedback.learn.window import DataWindow

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class TrainerRegistry(CandidateRegistry, ChampionRegistry, HoldRegistry, Protocol):
    """The registry port of the trainer (``driftloop.registry.MlflowRegistry``)."""


class TrainerWorker:
    def __init__(
        self,
        log_: EventLog,
        registry: TrainerRegistry,
        settings: TrainerSettings,
        *,
        clock: Clock = time.time,
        metrics: TrainerMetrics | None = None,
    ) -> None:
        self.log = log_
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or TrainerMetrics()
        # DRIFTLOOP_STATE_STORE: <state_dir>/<model>.checkpoint, or that key in the compacted state topic
        self.store = CheckpointStore(
            settings.checkpoint_dir(),
            settings.model_name,
            open_state_store(log_, settings.checkpoint_dir(), f"trainer/{settings.group_id}"),
        )
        self.registrar = CandidateRegistrar(registry, settings.model_name, settings.challenger_alias)
        self.state: TrainerState | None = None
        self.consumer: Consumer | None = None
        self.drift_consumer: Consumer | None = None
        self.status = "starting"
        self._assigned: dict[str, set[TopicPartition]] = {"labelled": set(), "drift": set()}
        # read, not learned yet: ``_batch`` from row ``_cursor`` on (None when nothing is left); a poll's
        # rows are learned in slices from the cursor, so its lists are never copied per mini-batch
        self._batch: Rows | None = None
        self._cursor = 0
        # of each row of ``_batch``: whether it carries the champion's own prediction (``served``, asked
        # once per poll; the champion changes only when nothing is batched: ``_refresh_champion``)
        self._served = np.zeros(0, dtype=bool)
        self._due: dict[str, float] = {}  # what -> earliest next attempt
        self._last_checkpoint = clock()
        self._since_checkpoint = 0
        self._examples_per_record = 1.0  # of the last poll: batch records hold many
        # learned rows' label latencies (seconds) and replayed rows, observed a step at a time
        self._latencies: list[np.ndarray] = []
        self._unaccounted = [0, 0]  # rows learned, rows replayed
        # a due candidate is held while the previous one is judged (not checkpointed: a restart starts
        # the hold's clock again)
        self.gate = CutGate(registry, settings, self.metrics)

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        frozen = False
        try:
            while not should_stop():
                if self.step() == 0 and self.state is None:
                    time.sleep(min(0.5, self.settings.poll_timeout_s or 0.5))
                if not frozen and self.state is not None:
                    # the start-up heap (libraries, both models) left out of every later collection: a
                    # poll allocates thousands of small objects, and each full collection scanned it all
                    gc.freeze()
                    frozen = True
            if self.state is not None and self.consumer is not None:
                self.checkpoint()
        finally:
            self.close()

    def step(self) -> int:
        """One poll of the labelled topic and what follows; returns the number of records read."""
        now = self.clock()
        if self.state is None and not self._start(now):
            return 0
        self._register_pending(now)  # also while the topic is missing: candidates of a previous run
        if self.consumer is None and not self._open_consumers(now):
            return 0
        assert self.state is not None and self.consumer is not None
        self._refresh_champion(now)
        self._read_drift(now)
        records = self.consumer.poll(self.settings.poll_timeout_s, self._poll_records())
        records = self._sync(self.consumer, "labelled", self.state.offsets, records)
        if records:
            self._take(records, now)
        if self._batch is not None and not records:
            self._learn_batch(now)  # caught up: learn what is batched, do not wait for a full batch
        self._account_learned()
        now = self.clock()
        if self.gate.hold.held_since is not None:  # a held candidate is cut once the previous one is
            self._consider(now)  # concluded, new examples or not
        if self._since_checkpoint >= self.settings.checkpoint_every_examples or (
            self._since_checkpoint and now - self._last_checkpoint >= self.settings.checkpoint_interval_s
        ):
            self.checkpoint()
        self._register_pending(now)
        self._refresh_gauges()
        return len(records)

    def checkpoint(self) -> None:
        """Learn what is batched, write the checkpoint durably, then commit its offsets."""
        state = self.state
        if state is None:
            return
        size = self.settings.batch_size
        while self._batch is not None:  # what is batched, learned before its offsets are written
            self._learn_batch(self.clock(), may_cut=False, size=size)
        self._account_learned()  # what it learned counted, as at the end of a step
        self.store.write({"state": state})
        self.metrics.checkpoints.inc()
        self._since_checkpoint = 0
        self._last_checkpoint = self.clock()
        for consumer, kind, offsets in (
            (self.consumer, "labelled", state.offsets),
            (self.drift_consumer, "drift", state.drift_offsets),
        ):
            if consumer is None:
                continue
            owned = {tp: o for tp, o in offsets.items() if tp in self._assigned[kind]}
            try:
                if owned:
                    consumer.commit(owned)
            except CommitFailedError as exc:  # a rebalance: the checkpoint still holds the offsets
                log.warning(
                    "trainer: commit of %s offsets failed (%s); the next checkpoint commits", kind, exc
                )

    def close(self) -> None:
        for consumer in (self.consumer, self.drift_consumer):
            if consumer is not None:
                consumer.close()
        self.consumer = self.drift_consumer = None

    # -- starting: a checkpoint, else the champion ---------------------------------------------------
    def _start(self, now: float) -> bool:
        saved = self.store.load()
        if saved is not None and self._bound(saved["state"]):
            self.state = saved["state"]
            assert self.state is not None
            log.info(
                "trainer: resumed from %s (champion v%d, %d examples learned, %d candidates pending)",
                self.store.where(),
                self.state.champion.version,
                self.state.challenger.learned,
                len(self.state.pending),
            )
            self._on_state()
            return True
        if now < self._due.get("champion", 0.0):
            return False
        s = self.settings
        try:
            champion = load_champion(self.registry, s.model_name, s.champion_alias)
        except ChampionUnavailable as exc:
            self._wait("champion", now, s.champion_retry_s, f"no champion registered yet: {exc}")
            return False
        except Exception as exc:  # an unreachable or failing registry: retried, never fatal
            self._wait(
                "champion", now, s.champion_retry_s, f"cannot load the champion from the registry: {exc!r}"
            )
            return False
        replay = ReplayBuffer(s.replay_capacity, s.replay_ratio, s.seed)
        policy = CandidatePolicy(s.policy, now=now, baseline=champion.baseline)
        policy.champion_version = str(champion.version)
        self.state = TrainerState(
            champion=champion,
            challenger=Challenger(champion.model, replay),
            deduper=LabelledDeduper(s.dedupe_window),
            policy=policy,
            window=DataWindow(s.reference_rows),
            sources={kind: source.as_dict() for kind, source in self._sources().items()},
        )
        log.info(
            "trainer: challenger starts from %s v%d (%s, training-time error %s)",
            s.model_name,
            champion.version,
            self.state.challenger.task,
            champion.baseline,
        )
        self._on_state()
        return True

    def _sources(self) -> dict[str, StateSource]:
        """What the checkpoint's offsets are read from: the labelled topic and the drift topic."""
        s = self.settings
        identity = self.log.identity()
        return {
            "labelled": StateSource(identity, s.group_id, (s.labelled_topic,)),
            "drift": StateSource(identity, f"{s.group_id}-drift", (s.drift_topic,)),
        }

    def _bound(self, state: TrainerState) -> bool:
        """Whether the checkpoint's ``state`` was taken from this log, group and topics (then it is
        bound to them). One taken elsewhere stops the trainer (``CheckpointSourceError``) or, with
        ``reset_state``, is moved aside: the trainer starts again from the champion, reading from this
        log's committed offsets. Its offsets are never applied here, which would skip input."""
        sources = self._sources()
        recorded = getattr(state, "sources", None)  # None: a checkpoint from before sources
        ends = end_offsets_of(self.log.end_offsets)
        for kind, offsets in (("labelled", state.offsets), ("drift", state.drift_offsets)):
            source = sources[kind]
            problem = source_problem(
                None if recorded is None else recorded.get(kind, {}),
                source,
                offsets,
                ends,
                partial(self._committed, source),
            )
            if problem is None:
                continue
            if not self.settings.reset_state:
                self.close()
                raise CheckpointSourceError(
                    refusal(
                        "trainer checkpoint",
                        self.store.where(),
                        f"its {kind} offsets: {problem}",
                        "DRIFTLOOP_TRAINER_RESET_STATE",
                        "DRIFTLOOP_TRAINER_STATE_DIR",
                    )
                )
            aside = self.store.discard()
            log.warning(
                "trainer: DRIFTLOOP_TRAINER_RESET_STATE: checkpoint %s moved to %s (its challenger and "
                "pending candidates are dropped); starting from the champion and the committed offsets "
                "of %s: its %s offsets: %s",
                self.store.where(),
                aside,
                source.log,
                kind,
                problem,
            )
            return False
        if recorded is None:
            log.warning("trainer: checkpoint %s had no source; adopted for %s", self.store.where(), sources)
        state.sources = {kind: source.as_dict() for kind, source in sources.items()}
        return True

    def _committed(self, source: StateSource, tp: TopicPartition) -> int | None:
        """The group's committed offset (for a checkpoint without source); opens its consumer early."""
        labelled = source.group == self.settings.group_id
        consumer = self.consumer if labelled else self.drift_consumer
        if consumer is None:
            try:
                self.log.partitions_for(source.topics[0])
            except EventLogError:
                return None
            consumer = self.log.consumer(source.group, list(source.topics))
            if labelled:
                self.consumer = consumer
            else:
                self.drift_consumer = consumer
        return consumer.committed(tp)

    def _on_state(self) -> None:
        assert self.state is not None
        self.metrics.waiting.labels("champion").set(0)
        self.metrics.champion_version.set(self.state.champion.version)
        self._due["champion_refresh"] = self.clock() + self.settings.champion_retry_s
        self.status = "learning"

    def _wait(self, what: str, now: float, retry_s: float, message: str) -> None:
        self.status = f"waiting: {message}"
        self.metrics.waiting.labels(what).set(1)
        self._due[what] = now + retry_s
        log.warning("trainer: %s; looking again in %.0f s", message, retry_s)

    def _open_consumers(self, now: float) -> bool:
        s = self.settings
        if now < self._due.get("topic", 0.0):
            return False
        try:
            self.log.partitions_for(s.labelled_topic)
        except EventLogError:
            self._wait(
                "topic",
                now,
                s.topic_retry_s,
                f"no labelled topic {s.labelled_topic!r} yet "
                "(the joiner creates it: `driftloop feedback join`)",
            )
            return False
        self.metrics.waiting.labels("topic").set(0)
        self.consumer = self.log.consumer(s.group_id, [s.labelled_topic])
        self.status = "learning"
        return True

    def _refresh_champion(self, now: float) -> None:
        """A new champion (promoted by the rollout): the challenger learns on from it."""
        state = self.state
        if state is None or now < self._due.get("champion_refresh", 0.0):
            return
        self._due["champion_refresh"] = now + self.settings.champion_retry_s
        s = self.settings
        try:
            if current_version(self.registry, s.model_name, s.champion_alias) == state.champion.version:
                return
            champion = load_champion(self.registry, s.model_name, s.champion_alias)
        except Exception as exc:  # keep learning from the champion we have
            log.warning(
                "trainer: cannot check the champion alias (%r); keeping v%d", exc, state.champion.version
            )
            return
        while self._batch is not None:
            self._learn_batch(now, may_cut=False, size=self.settings.batch_size)
        log.info(
            "trainer: champion is now v%d (was v%d): challenger restarts from it",
            champion.version,
            state.champion.version,
        )
        state.champion = champion
        state.challenger.restart_from(champion.model)
        state.policy.new_champion(str(champion.version), champion.baseline)
        state.window = DataWindow(s.reference_rows)
        self.metrics.champion_version.set(champion.version)

    # -- reading ---------------------------------------------------------------------------------------
    def _sync(
        self, consumer: Consumer, kind: str, offsets: dict[TopicPartition, int], records: list[Record]
    ) -> list[Record]:
        """Seek partitions newly assigned to the checkpoint's offsets; drop records already learned."""
        owned = consumer.assignment()
        known = self._assigned[kind]
        seeked: set[tuple[str, int]] = set()
        for tp in owned - known:
            if tp in offsets:
                consumer.seek(tp, offsets[tp])
                seeked.add((tp.topic, tp.partition))
        self._assigned[kind] = set(owned)
        # by partition, as tuples (a TopicPartition per record costs more than the check)
        floor = {(tp.topic, tp.partition): offsets.get(tp, 0) for tp in owned}
        for key in seeked:
            del floor[key]
        return [r for r in records if r.offset >= floor.get((r.topic, r.partition), 1 << 62)]

    def _read_drift(self, now: float) -> None:
        state = self.state
        assert state is not None
        if self.drift_consumer is None:
            if now < self._due.get("drift", 0.0):
                return
            try:
                self.log.partitions_for(self.settings.drift_topic)
            except EventLogError:
                self._due["drift"] = now + self.settings.topic_retry_s
                return  # no drift monitor yet: the other rules still cut candidates
            self.drift_consumer = self.log.consumer(
                f"{self.settings.group_id}-drift", [self.settings.drift_topic]
            )
        records = self.drift_consumer.poll(0.0, 500)
        for record in self._sync(self.drift_consumer, "drift", state.drift_offsets, records):
            state.drift_offsets[record.tp] = record.offset + 1
            try:
                data = orjson.loads(record.value)
                event = DriftEvent(str(data["predictor"]), str(data["model_version"]), bool(data["is_drift"]))
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.warning("trainer: undecodable drift event at %s@%d: %r", record.tp, record.offset, exc)
                self.metrics.drift_events.labels("undecodable").inc()
                continue
            used = state.policy.drift(event)
            self.metrics.drift_events.labels("used" if used else "ignored").inc()

    def _take(self, records: list[Record], now: float) -> None:
        """Read one poll: every record moves the offsets on; the examples kept join the batch, which is
        learned ``batch_size`` rows at a time."""
        state = self.state
        assert state is not None
        # offsets ascend within a partition: the last record of each has its highest
        last = dict(
            zip(
                map(attrgetter("topic", "partition"), records),
                map(attrgetter("offset"), records),
                strict=True,
            )
        )
        for (topic, partition), offset in last.items():
            state.offsets[TopicPartition(topic, partition)] = offset + 1
        intake = read_poll(records, state.deduper, state.challenger)
        state.consumed += intake.examples
        self.metrics.consumed.inc(intake.examples)
        self._examples_per_record = max(1.0, intake.examples / len(records))
        if intake.duplicates:
            state.duplicates += intake.duplicates
            self.metrics.duplicates.inc(intake.duplicates)
        for refused in intake.refused:
            self._reject(refused.reason, refused.record, refused.detail)
        if not len(intake.rows):
            return
        if self._batch is None:
            self._batch = intake.rows
        else:
            self._batch = self._batch.slice(self._cursor, len(self._batch)).then(intake.rows)
        self._cursor = 0
        self._served = state.challenger.served(
            self._batch.predictions, self._batch.versions, str(state.champion.version)
        )
        size = self.settings.batch_size
        while self._batch is not None and len(self._batch) - self._cursor >= size:
            self._learn_batch(now, size=size)

    def _poll_records(self) -> int:
        """Records to ask for: ``poll_max_records``, cut to about ``poll_max_examples`` examples."""
        s = self.settings
        return max(1, min(s.poll_max_records, int(s.poll_max_examples / self._examples_per_record)))

    def _reject(self, reason: str, record: Record, detail: str) -> None:
        assert self.state is not None
        self.state.rejected[reason] = self.state.rejected.get(reason, 0) + 1
        self.metrics.rejected.labels(reason).inc()
        log.warning(
            "trainer: labelled record %s@%d refused (%s): %s", record.tp, record.offset, reason, detail
        )

    # -- learning and cutting --------------------------------------------------------------------------
    def _learn_batch(self, now: float, *, may_cut: bool = True, size: int | None = None) -> None:
        """Learn the first ``size`` batched rows (default: all), then ask the policy."""
        rows, start = self._batch, self._cursor
        assert rows is not None
        stop = len(rows) if size is None else min(len(rows), start + size)
        batch = rows.slice(start, stop)
        known = self._served[start:stop]
        if stop >= len(rows):
            self._batch, self._cursor = None, 0
        else:
            self._cursor = stop
        self._learn_rows(batch, known, now, may_cut=may_cut)

    def _learn_rows(self, batch: Rows, known: np.ndarray, now: float, *, may_cut: bool = True) -> None:
        """Score, learn and account one mini-batch (``known``: its rows with the champion's own
        prediction), then ask the policy."""
        state = self.state
        assert state is not None
        X = batch.X
        y = state.challenger.targets(batch.targets)
        challenger = state.challenger
        replayed_before = challenger.replayed
        scores = challenger.learn(X, y, (known, batch.predictions))
        self._unaccounted[0] += len(X)
        self._unaccounted[1] += challenger.replayed - replayed_before
        window = state.window
        window.add_rows(batch.ids, batch.event_times, batch.sources, batch.offsets)
        state.learned_digest = (state.learned_digest + digest_of(batch.ids)) % DIGEST_MOD
        window.add_scores(X, scores.challenger, scores.champion)
        state.policy.learned(len(X), scores.champion.tolist())
        self._since_checkpoint += len(X)
        self._latencies.append(now - batch.truth_times[batch.by_request])
        if may_cut:
            self._consider(now)

    def _consider(self, now: float) -> None:
        """Ask the policy; cut what is due unless the previous candidate is still judged (``CutGate``:
        then the trigger stays due and is asked again)."""
        state = self.state
        assert state is not None
        trigger = state.policy.decide(now)
        if trigger is None:
            self.gate.not_due()
        elif self.gate.allows(trigger, now, champion=state.champion.version, unregistered=len(state.pending)):
            self._cut(trigger, now)
        elif self.gate.champion_moved():
            self._due["champion_refresh"] = now  # the next step restarts the challenger from it
        self.status = "learning" if (held := self.gate.status(now)) is None else f"learning; {held}"

    def _account_learned(self) -> None:
        """Once per step for the rows learned in it: the learned/replayed counters and the label latency
        histogram (one observation of all the step's rows; the replay buffer is offered each batch right
        after it is learned, ``Challenger.learn``)."""
        if not self._latencies:
            return
        latencies = self._latencies[0] if len(self._latencies) == 1 else np.concatenate(self._latencies)
        self._latencies = []
        self.metrics.label_latency.observe_many(latencies)
        learned, replayed = self._unaccounted
        self._unaccounted = [0, 0]
        self.metrics.learned.inc(learned)
        self.metrics.replayed.inc(replayed)

    def _cut(self, trigger: Trigger, now: float) -> None:
        state = self.state
        assert state is not None
        s = self.settings
        model = state.challenger.model
        params: dict[str, Any] = {
            **estimator_params(model),
            **{f"policy.{k}": v for k, v in s.policy.model_dump().items()},
            "trainer.batch_size": s.batch_size,
            "trainer.replay_capacity": s.replay_capacity,
            "trainer.replay_ratio": s.replay_ratio,
            "trainer.seed": s.seed,
            "trainer.task": state.challenger.task,
            **state.window.params(),
        }
        candidate = Candidate(
            candidate_id=uuid.uuid4().hex,
            trigger=trigger.value,
            parent_version=state.champion.version,
            cut_at=now,
            model_pickle=pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
            params=params,
            metrics={
                **state.window.metrics(),
                "examples_learned_total": float(state.challenger.learned),
                "examples_replayed_total": float(state.challenger.replayed),
            },
            reference=state.window.reference_array(),
            feature_names=state.champion.feature_names,
        )
        state.pending.append(candidate)
        state.candidates_cut += 1
        state.policy.cut(now)
        self.gate.cut(now)
        state.window = DataWindow(s.reference_rows)
        self.metrics.candidates.labels(trigger.value).inc()
        log.info(
            "trainer: candidate %s cut (%s) after %s examples",
            candidate.candidate_id,
            trigger.value,
            params["window.count"],
        )
        self.checkpoint()  # the cut is durable before it is registered
        self._due.pop("registry", None)
        self._register_pending(now)

    def _register_pending(self, now: float) -> None:
        state = self.state
        if state is None or not state.pending or now < self._due.get("registry", 0.0):
            return
        while state.pending:
            candidate = state.pending[0]
            try:
                ref = self.registrar.register(candidate)
            except Exception as exc:  # MLflow unreachable or failing: keep the candidate, retry later
                candidate.attempts += 1
                candidate.last_error = repr(exc)
                self.metrics.registration_failures.inc()
                self._due["registry"] = now + self.settings.registry_retry_s
                log.warning(
                    "trainer: cannot register candidate %s (attempt %d): %r; it stays in the checkpoint and "
                    "is retried in %.0f s (nothing is promoted meanwhile)",
                    candidate.candidate_id,
                    candidate.attempts,
                    exc,
                    self.settings.registry_retry_s,
                )
                return
            state.pending.pop(0)
            state.last_candidate_version = ref.version
            state.registered_versions.append(ref.version)
            self.metrics.registered.inc()
            self.metrics.last_candidate_version.set(ref.version)
            log.info(
                "trainer: candidate %s registered as %s v%d (alias %s)",
                candidate.candidate_id,
                self.settings.model_name,
                ref.version,
                self.settings.challenger_alias,
            )

    def _refresh_gauges(self) -> None:
        state = self.state
        if state is None:
            return
        monitor = state.policy.degradation
        self.metrics.pending.set(len(state.pending))
        self.gate.refresh_gauges(self.clock())
        if monitor.mean is not None:
            self.metrics.champion_live_error.set(monitor.mean)
        bound = monitor.lower_bound()
        if bound is not None:
            self.metrics.champion_live_error_bound.set(bound)
        if monitor.baseline is not None:
            self.metrics.champion_baseline_error.set(monitor.baseline)
