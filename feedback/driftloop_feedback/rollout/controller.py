"""The rollout controller: a state machine driven by ``tick(now)`` (no sleeps, the clock is the caller's).

A step's clock (its interval and progress deadline) starts when its weight is in effect: read from the
injected ``clock`` after the backend calls that put it there (loading a model on the canary can take
seconds), not at the ``now`` of the tick that began it.

idle --(challenger with verdict ``pass`` and no rollout status)--> the canary's model node gets the
candidate at weight 0 --> step 0 (first weight) --> one check per ``interval``:

- operations breach (canary 5xx rate, p99 or outlier rate above main's, ``ops``) or a decided
  ground-truth ``fail`` (``evidence``): a failed check; the weight stays; ``threshold`` failed checks
  -> roll back;
- ground truth ``pass`` and no breach: the next weight; at the last (``maxWeight``) -> promote;
- ground truth ``inconclusive``: wait at this weight (no data is never a failure, nothing is promoted
  blind); past ``progress_deadline_s`` at one weight, or with the step's budget used -> roll back with
  that reason.

Roll back: canary to 0, the champion untouched, the candidate tagged ``driftloop.rollout.status=rejected``
with the reason. Promote: the main predictor's model node swapped to the candidate, alias ``champion``
moved, canary to 0, tagged ``promoted``. Every decision is an event on ``driftloop.rollouts`` (written
before the action it announces) and a tag on the candidate's version.

Restart: ``start`` takes the deployment's lease, then reads the deployment (backend) and its last decision
(topic): a rollout recorded as progressing whose candidate the canary still serves at a step weight
resumes at that weight (the step's evidence starts again: conservative); a promotion or rollback under way
is finished; anything else with canary traffic is set back to main (aborted). A graceful ``stop`` sets the
canary to 0 and tags the candidate ``interrupted``: it is rolled out again from the first step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from driftloop.eventlog import Consumer, EventLog, EventLogError
from driftloop.registry import ModelVersionRef, RegistryError
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.records import LabelledExample, UndecodableRecord
from driftloop_feedback.rollout.backend import TrafficBackend
from driftloop_feedback.rollout.errors import BackendError, RolloutError
from driftloop_feedback.rollout.events import EventWriter, Phase, RolloutEvent, last_event
from driftloop_feedback.rollout.evidence import StepEvidence
from driftloop_feedback.rollout.lease import Lease
from driftloop_feedback.rollout.metrics import RolloutMetrics
from driftloop_feedback.rollout.ops import IngressSnapshot, OpsCheck, OpsSource, compare
from driftloop_feedback.rollout.settings import RolloutSettings
from driftloop_feedback.validate import Decision, ValidationSettings

log = logging.getLogger(__name__)
TAG = "driftloop.rollout."
STATUS_TAG = TAG + "status"
VERDICT_TAG = "driftloop.validation.verdict"
RETRIED_STATUSES = (None, "interrupted")  # a candidate with another status is not rolled out again
Clock = Callable[[], float]


class RolloutRegistry(Protocol):
    """The registry port of the controller (``driftloop.registry.MlflowRegistry`` has it)."""

    def get_alias(self, name: str, alias: str) -> ModelVersionRef: ...

    def set_alias(self, name: str, alias: str, version: int) -> None: ...

    def version_tags(self, name: str, version: int) -> dict[str, str]: ...

    def set_version_tags(self, name: str, version: int, tags: dict[str, str]) -> None: ...

    def load_sklearn_model(self, uri: str) -> Any: ...


@dataclass
class Rollout:
    candidate: int
    champion: int
    champion_model: Any
    step: int = -1
    weight: int = 0
    started_at: float = 0.0
    step_started_at: float = 0.0
    next_check_at: float = 0.0
    failed_checks: int = 0
    evidence: StepEvidence | None = None
    ops_before: IngressSnapshot | None = None
    phase: Phase = "progressing"
    reason: str = ""  # why it is being rolled back


class RolloutController:
    def __init__(
        self,
        settings: RolloutSettings,
        backend: TrafficBackend,
        registry: RolloutRegistry,
        log_: EventLog,
        lease: Lease,
        ops: OpsSource,
        validation: ValidationSettings | None = None,
        *,
        metrics: RolloutMetrics | None = None,
        clock: Clock = time.time,
    ) -> None:
        """``clock``: the time base of ``tick(now)`` (the wall clock in production, the fake clock in
        tests); read when a step begins, after the calls that put its weight in effect."""
        self.settings = settings
        self.backend = backend
        self.registry = registry
        self.log = log_
        self.lease = lease
        self.ops = ops
        self.validation = validation or ValidationSettings()
        self.metrics = metrics or RolloutMetrics()
        self.clock = clock
        self.weights = settings.weights()
        self.rollout: Rollout | None = None
        self.status = "not started"
        self.started = False
        self._writer: EventWriter | None = None
        self._consumer: Consumer | None = None
        self._deduper = LabelledDeduper(settings.dedupe_window)
        self._next_registry_poll = 0.0
        self._now = 0.0

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        """Take the lease (``LeaseHeldError`` if another controller has it), then recover from the
        deployment's actual state and its last recorded decision."""
        self._now = now
        self.lease.acquire()
        self._writer = EventWriter(self.log, self.settings.rollouts_topic)
        self.started = True
        self._recover()

    def tick(self, now: float) -> None:
        """One turn: renew the lease, read labelled rows, then act on whatever is due at ``now``."""
        self._now = now
        if not self.started:
            self.start(now)
        self.lease.renew()
        self._read_labelled()
        rollout = self.rollout
        try:
            if rollout is None:
                if now >= self._next_registry_poll:
                    self._next_registry_poll = now + self.settings.registry_poll_s
                    self._look_for_candidate()
            elif rollout.phase == "promoting":
                self._finish_promotion(rollout)
            elif rollout.phase == "rolling_back":
                self._finish_rollback(rollout)
            elif now >= rollout.next_check_at:
                self._check(rollout, now)
        except (BackendError, RegistryError) as exc:
            target = "backend" if isinstance(exc, BackendError) else "registry"
            self.metrics.failures.labels(target).inc()
            log.warning("rollout: %s call failed (%s); retried on the next tick", target, exc)
        self._gauges()

    def stop(self) -> None:
        """Stop: a rollout in progress is interrupted (canary to 0, tagged ``interrupted``, retried later)
        so that traffic is never left split without an owner; then the lease is released."""
        try:
            rollout = self.rollout
            if rollout is not None and rollout.phase == "progressing":
                self._set_canary(0)
                rollout.weight = 0
                self._tag(rollout.candidate, "interrupted", "the controller was stopped; retried from step 0")
                self._emit("aborted", "idle", rollout, reason="controller stopped: canary set back to 0")
                self.metrics.rollouts.labels("aborted").inc()
                self.rollout = None
            self.lease.release()
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- recovery ------------------------------------------------------------------------------------
    def _recover(self) -> None:
        s = self.settings
        last = last_event(self.log, s.rollouts_topic, s.key)
        state = self.backend.read(s.namespace, s.deployment)
        canary_weight = state.weight(s.canary_predictor)
        if last is not None and last.candidate is not None and last.champion is not None:
            if last.phase in ("promoting", "rolling_back"):
                rollout = Rollout(
                    last.candidate, last.champion, None, last.step, last.weight, phase=last.phase
                )
                rollout.reason = last.reason
                rollout.failed_checks = last.failed_checks
                self.rollout = rollout
                self._emit("resumed", last.phase, rollout, reason=f"finishing {last.phase} after a restart")
                if last.phase == "promoting":
                    self._finish_promotion(rollout)
                else:
                    self._finish_rollback(rollout)
                return
            if last.phase == "progressing":
                self._resume(last, state.model_uri(s.canary_predictor, s.model_node), canary_weight)
                return
        if canary_weight > 0:
            self._set_canary(0)
            self._emit(
                "aborted",
                "idle",
                None,
                reason=f"traffic split without an owner (canary at {canary_weight}%): set back to main",
            )
            self.metrics.rollouts.labels("aborted").inc()
        self.status = "idle"

    def _resume(self, last: RolloutEvent, canary_uri: str | None, canary_weight: int) -> None:
        assert last.candidate is not None and last.champion is not None
        s = self.settings
        why = None
        expected = self._uri(last.candidate)
        champion = self.registry.get_alias(s.model_name, s.champion_alias).version
        if canary_uri != expected:
            why = f"the canary serves {canary_uri}, not the candidate {expected}"
        elif canary_weight != 0 and canary_weight not in self.weights:
            why = f"the canary is at {canary_weight}%, not one of the steps {self.weights}"
        elif champion != last.champion:
            why = f"the champion moved from v{last.champion} to v{champion} meanwhile"
        if why is not None:
            self._set_canary(0)
            self._tag(last.candidate, "aborted", f"restart could not resume: {why}")
            self._emit("aborted", "idle", None, candidate=last.candidate, reason=f"restart: {why}")
            self.metrics.rollouts.labels("aborted").inc()
            self.status = "idle"
            return
        champion_model = self.registry.load_sklearn_model(self._uri(last.champion))
        step = self.weights.index(canary_weight) if canary_weight else -1
        rollout = Rollout(
            last.candidate, last.champion, champion_model, step, canary_weight, started_at=self.clock()
        )
        rollout.failed_checks = last.failed_checks
        self.rollout = rollout
        if step < 0:
            self._emit("resumed", "progressing", rollout, reason="restart: candidate on the canary at 0")
            self._advance(rollout, gate=None, ops=None)
            return
        self._begin_step(rollout)
        self._emit(
            "resumed", "progressing", rollout, reason=f"restart: resumed at {canary_weight}% (fresh evidence)"
        )

    # -- idle: a validated challenger starts a rollout --------------------------------------------------
    def _look_for_candidate(self) -> None:
        s = self.settings
        try:
            champion = self.registry.get_alias(s.model_name, s.champion_alias)
            challenger = self.registry.get_alias(s.model_name, s.challenger_alias)
        except RegistryError:
            self.status = (
                f"idle: no {s.champion_alias!r} or {s.challenger_alias!r} version of {s.model_name!r}"
            )
            return
        if challenger.version == champion.version:
            self.status = f"idle: challenger v{challenger.version} is the champion"
            return
        tags = self.registry.version_tags(s.model_name, challenger.version)
        verdict, status = tags.get(VERDICT_TAG), tags.get(STATUS_TAG)
        if verdict != "pass":
            self.status = (
                f"idle: challenger v{challenger.version} has validation verdict {verdict!r}, not 'pass'"
            )
            return
        if status not in RETRIED_STATUSES:
            self.status = f"idle: challenger v{challenger.version} already rolled out ({status})"
            return
        champion_model = self.registry.load_sklearn_model(champion.uri)
        state = self.backend.read(s.namespace, s.deployment)
        if state.weight(s.canary_predictor) != 0:
            self._set_canary(0)
        self.backend.set_model(s.namespace, s.deployment, s.canary_predictor, s.model_node, challenger.uri)
        # the rollout starts once the canary serves the candidate (the swap may take seconds)
        rollout = Rollout(challenger.version, champion.version, champion_model, started_at=self.clock())
        self.rollout = rollout
        self._tag(challenger.version, "progressing", "")
        self._emit(
            "started", "progressing", rollout, reason=f"candidate v{challenger.version} on the canary at 0%"
        )
        log.info(
            "rollout: v%d (validated) on the canary at 0%%; champion v%d",
            challenger.version,
            champion.version,
        )
        self._advance(rollout, gate=None, ops=None)

    # -- checks --------------------------------------------------------------------------------------
    def _check(self, rollout: Rollout, now: float) -> None:
        s = self.settings
        rollout.next_check_at = now + s.interval_s
        champion = self._champion_now()
        if champion is not None and champion != rollout.champion:
            self._rollback(
                rollout, f"the champion moved from v{rollout.champion} to v{champion} during the rollout"
            )
            return
        ops = self._ops_check(rollout)
        assert rollout.evidence is not None
        decision = rollout.evidence.decision()
        gate = _gate(decision)
        failed = None
        if ops is not None and ops.breach is not None:
            failed = f"operations: {ops.breach}"
        elif decision.verdict == "fail":
            failed = (
                f"ground truth: the canary's mean loss is above the champion's (lower bound "
                f"{decision.lower:.4g} > {decision.threshold:g}, n={decision.n}, {decision.method})"
            )
        if failed is not None:
            rollout.failed_checks += 1
            self.metrics.checks.labels("failed").inc()
            if rollout.failed_checks >= s.threshold:
                self._rollback(
                    rollout,
                    f"{rollout.failed_checks} failed checks (threshold {s.threshold}); last: {failed}",
                    gate,
                    ops,
                )
                return
            self._tag(rollout.candidate, "progressing", failed)
            self._emit("check", "progressing", rollout, result="failed", reason=failed, gate=gate, ops=ops)
            return
        if decision.verdict == "pass":
            self.metrics.checks.labels("passed").inc()
            self._advance(rollout, gate=gate, ops=ops)
            return
        self.metrics.checks.labels("inconclusive").inc()
        waited = now - rollout.step_started_at
        if decision.exhausted:
            self._rollback(
                rollout,
                f"ground truth inconclusive after the step's budget of {decision.n} examples at "
                f"{rollout.weight}%",
                gate,
                ops,
            )
        elif waited >= s.progress_deadline_s:
            self._rollback(
                rollout,
                f"progress deadline: {decision.n} paired labelled examples in {waited:.0f} s at "
                f"{rollout.weight}% "
                f"(at least {self.validation.min_examples} needed, and a decision): too little ground truth",
                gate,
                ops,
            )
        else:
            reason = f"waiting for ground truth: n={decision.n} at {rollout.weight}% (inconclusive)"
            self.status = f"v{rollout.candidate} at {rollout.weight}%: {reason}"
            self._emit(
                "check", "progressing", rollout, result="inconclusive", reason=reason, gate=gate, ops=ops
            )

    def _ops_check(self, rollout: Rollout) -> OpsCheck | None:
        try:
            after = self.ops.snapshot()
        except BackendError as exc:
            self.metrics.failures.labels("metrics").inc()
            log.warning("rollout: no ops metrics this interval (%s): no ops verdict", exc)
            return OpsCheck.no_figures(f"no ops verdict: metrics unavailable ({exc})")
        before, rollout.ops_before = rollout.ops_before, after
        if before is None:
            return OpsCheck.no_figures("no ops verdict: no metrics at the interval's start")
        return compare(before, after, self.settings)

    def _champion_now(self) -> int | None:
        try:
            return self.registry.get_alias(self.settings.model_name, self.settings.champion_alias).version
        except RegistryError:
            return None

    # -- transitions ---------------------------------------------------------------------------------
    def _advance(self, rollout: Rollout, gate: dict[str, Any] | None, ops: OpsCheck | None) -> None:
        nxt = rollout.step + 1
        if nxt >= len(self.weights):
            self._promote(rollout, gate, ops)
            return
        weight = self.weights[nxt]
        self._set_canary(weight)
        rollout.step, rollout.weight = nxt, weight
        self._begin_step(rollout)
        self._tag(rollout.candidate, "progressing", "")
        self._emit(
            "step",
            "progressing",
            rollout,
            result="passed" if gate else "",
            reason=f"canary at {weight}%",
            gate=gate,
            ops=ops,
        )
        self.status = f"v{rollout.candidate} at {weight}% (step {nxt + 1}/{len(self.weights)})"
        log.info("rollout: %s", self.status)

    def _begin_step(self, rollout: Rollout) -> None:
        """The step's clock starts now that its weight is in effect (read after the backend calls)."""
        now = self.clock()
        rollout.step_started_at = now
        rollout.next_check_at = now + self.settings.interval_s
        rollout.evidence = StepEvidence(self.validation, rollout.champion_model)
        try:
            rollout.ops_before = self.ops.snapshot()
        except BackendError as exc:
            self.metrics.failures.labels("metrics").inc()
            log.warning("rollout: no ingress metrics at the step's start (%s)", exc)
            rollout.ops_before = None

    def _promote(self, rollout: Rollout, gate: dict[str, Any] | None, ops: OpsCheck | None) -> None:
        rollout.phase = "promoting"
        self._emit(
            "promoting",
            "promoting",
            rollout,
            result="passed",
            reason=f"passed at {rollout.weight}%",
            gate=gate,
            ops=ops,
        )
        self._finish_promotion(rollout)

    def _finish_promotion(self, rollout: Rollout) -> None:
        """Idempotent: main serves the candidate (hot swap), alias champion moves, canary to 0, tags."""
        s = self.settings
        uri = self._uri(rollout.candidate)
        self.backend.set_model(s.namespace, s.deployment, s.main_predictor, s.model_node, uri)
        self.registry.set_alias(s.model_name, s.champion_alias, rollout.candidate)
        self._set_canary(0)
        self._tag(
            rollout.candidate, "promoted", f"replaced v{rollout.champion}", previous=str(rollout.champion)
        )
        rollout.weight = 0
        self._emit(
            "promoted", "idle", rollout, reason=f"v{rollout.candidate} is the champion; main serves {uri}"
        )
        self.metrics.rollouts.labels("promoted").inc()
        self.status = f"idle: promoted v{rollout.candidate}"
        log.info("rollout: %s", self.status)
        self.rollout = None

    def _rollback(
        self, rollout: Rollout, reason: str, gate: dict[str, Any] | None = None, ops: OpsCheck | None = None
    ) -> None:
        rollout.phase, rollout.reason = "rolling_back", reason
        self._emit(
            "rolling_back", "rolling_back", rollout, result="failed", reason=reason, gate=gate, ops=ops
        )
        self._finish_rollback(rollout)

    def _finish_rollback(self, rollout: Rollout) -> None:
        """Idempotent: canary to 0, the champion untouched, the candidate tagged rejected with the reason."""
        self._set_canary(0)
        self._tag(rollout.candidate, "rejected", rollout.reason)
        rollout.weight = 0
        self._emit("rolled_back", "idle", rollout, reason=rollout.reason)
        self.metrics.rollouts.labels("rolled_back").inc()
        self.status = f"idle: rolled back v{rollout.candidate}: {rollout.reason}"
        log.warning("rollout: %s", self.status)
        self.rollout = None

    # -- reading the canary's labelled rows ----------------------------------------------------------------
    def _read_labelled(self) -> None:
        consumer = self._labelled_consumer()
        if consumer is None:
            return
        s = self.settings
        records = consumer.poll(s.poll_timeout_s, s.poll_max_records)
        if not records:
            return
        rows: list[LabelledExample] = []
        for record in records:
            before = self._deduper.duplicates
            try:
                fresh = list(self._deduper.feed([record.value]))  # one example, or a batch record's
            except UndecodableRecord as exc:
                self.metrics.rows_read.inc()
                self.metrics.rows_skipped.labels("undecodable").inc()
                log.warning(
                    "rollout: skipped an undecodable labelled record at %s/%d: %s",
                    record.topic,
                    record.offset,
                    exc,
                )
                continue
            duplicates = self._deduper.duplicates - before
            self.metrics.rows_read.inc(len(fresh) + duplicates)
            if duplicates:
                self.metrics.rows_skipped.labels("duplicate").inc(duplicates)
            rows.extend(fresh)
        self._feed(rows)
        consumer.commit()

    def _labelled_consumer(self) -> Consumer | None:
        if self._consumer is None:
            try:
                self.log.partitions_for(self.settings.labelled_topic)
            except EventLogError:
                return None  # the joiner creates it; looked for again on the next tick
            self._consumer = self.log.consumer(self.settings.group_id, [self.settings.labelled_topic])
        return self._consumer

    def _feed(self, rows: list[LabelledExample]) -> None:
        rollout = self.rollout
        skipped = self.metrics.rows_skipped
        if rollout is None or rollout.phase != "progressing" or rollout.evidence is None:
            skipped.labels("idle").inc(len(rows))
            return
        s = self.settings
        version = str(rollout.candidate)
        n_features = getattr(rollout.champion_model, "n_features_in_", None)
        use: list[LabelledExample] = []
        for row in rows:
            if row.endpoint != s.canary_predictor:
                skipped.labels("other_endpoint").inc()
            elif row.model_version != version:
                skipped.labels("other_version").inc()
            elif (n_features is not None and len(row.features) != n_features) or not np.all(
                np.isfinite(row.features)
            ):
                skipped.labels("features").inc()
            elif isinstance(row.truth, float) and not np.isfinite(row.truth):
                skipped.labels("truth").inc()
            else:
                use.append(row)
        if not use:
            return
        probabilities = None
        classes = use[0].classes
        if classes is not None and all(r.probabilities is not None and r.classes == classes for r in use):
            probabilities = np.asarray([r.probabilities for r in use], dtype=np.float64)
        try:
            rollout.evidence.feed(
                [r.features for r in use],
                [r.prediction for r in use],
                [r.truth for r in use],
                probabilities=probabilities,
                classes=classes if probabilities is not None else None,
            )
        except (ValueError, TypeError, RolloutError) as exc:
            skipped.labels("truth").inc(len(use))
            log.warning("rollout: %d canary rows could not be scored: %s", len(use), exc)
            return
        self.metrics.rows_used.inc(len(use))

    # -- effects -------------------------------------------------------------------------------------
    def _set_canary(self, weight: int) -> None:
        s = self.settings
        self.backend.set_traffic(
            s.namespace, s.deployment, {s.main_predictor: 100 - weight, s.canary_predictor: weight}
        )

    def _uri(self, version: int) -> str:
        return f"models:/{self.settings.model_name}/{version}"

    def _tag(self, version: int, status: str, reason: str, **extra: str) -> None:
        tags = {STATUS_TAG: status, TAG + "reason": reason[:4000], TAG + "at": f"{self._now:.3f}"}
        if self.rollout is not None and self.rollout.candidate == version:
            tags[TAG + "weight"] = str(self.rollout.weight)
            tags[TAG + "failed_checks"] = str(self.rollout.failed_checks)
        tags.update({TAG + k: v for k, v in extra.items()})
        self.registry.set_version_tags(self.settings.model_name, version, tags)

    def _emit(
        self,
        decision: str,
        phase: Phase,
        rollout: Rollout | None,
        *,
        candidate: int | None = None,
        result: str = "",
        reason: str = "",
        gate: dict[str, Any] | None = None,
        ops: OpsCheck | None = None,
    ) -> None:
        assert self._writer is not None, "start() first"
        event = RolloutEvent(
            deployment=self.settings.key,
            model=self.settings.model_name,
            decision=decision,
            phase=phase,
            candidate=rollout.candidate if rollout else candidate,
            champion=rollout.champion if rollout else None,
            weight=rollout.weight if rollout else 0,
            step=rollout.step if rollout else -1,
            failed_checks=rollout.failed_checks if rollout else 0,
            result=result,
            reason=reason,
            at=self._now,
            controller=self.lease.holder,
            gate=gate,
            ops=ops.as_dict() if ops is not None else None,
        )
        self._writer.write(event)
        self.last = event

    def _gauges(self) -> None:
        m, r = self.metrics, self.rollout
        m.step.set(r.step if r else -1)
        m.weight.set(r.weight if r else 0)
        m.candidate.set(r.candidate if r else 0)
        m.failed_checks.set(r.failed_checks if r else 0)
        m.step_examples.set(r.evidence.test.n if r and r.evidence else 0)


def _gate(decision: Decision) -> dict[str, Any]:
    """Which test decided, and with what: the event's and the tag's account of the ground truth."""
    return {
        "test": f"PairedLossTest({decision.method}, {decision.mode}, alpha={decision.alpha:g}, "
        f"margin={decision.margin:g})",
        "verdict": decision.verdict,
        "n": decision.n,
        "lower": decision.lower,
        "upper": decision.upper,
        "mean": None if np.isnan(decision.mean) else decision.mean,
        "threshold": decision.threshold,
        "exhausted": decision.exhausted,
    }
