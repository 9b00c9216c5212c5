"""The validator worker: a challenger registered -> validated on fresh labelled rows -> verdict written.

One ``step``: look at the aliases ``champion`` and ``challenger`` when due (every ``registry_poll_s``),
poll the labelled topic, keep each example once (``LabelledDeduper``), feed the rows the challenger has
not trained on to ``Validator.observe``, and write the verdict (``publish_verdict``) once the test
decides or its budget is used. A new challenger (the alias moved) abandons the validation in progress:
that version is tagged ``driftloop.validation.verdict=superseded`` and the new one starts on fresh rows.

Fresh rows: only rows read after the challenger was seen, and of those only rows after the candidate's
data window (``TrainingWindow``: the window's next offset per partition, from its run's params).

Restart-safe: the state (stream position, deduper window, the test in progress with both frozen models,
verdicts not written yet) is saved durably, and offsets are committed only behind it. A restarted worker
resumes the same test at the next row; nothing is fed twice. A version that already carries a verdict tag
is never validated or written again.

Waiting, not crashing: without a champion, a challenger or the labelled topic the worker says so once and
looks again; a failing registry is retried with exponential backoff, and no verdict is written without the
evidence (a verdict decided while MLflow is down waits in the state until it can be written).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from driftloop.eventlog import CommitFailedError, Consumer, EventLog, EventLogError, Record, TopicPartition
from driftloop.eventlog.state_source import StateSource, end_offsets_of, move_aside, refusal, source_problem
from driftloop.registry import ModelVersionRef, RegistryError
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.records import LabelledExample, UndecodableRecord
from driftloop_feedback.validate.errors import ValidatorConfigError
from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
from driftloop_feedback.validate.state import (
    StateStore,
    TrainingWindow,
    ValidationRun,
    ValidatorState,
    ValidatorStateError,
    ValidatorStateSourceError,
)
from driftloop_feedback.validate.validator import TAG_PREFIX, ValidationResult, Validator, publish_verdict

log = logging.getLogger(__name__)
Clock = Callable[[], float]
VERDICT_TAG = TAG_PREFIX + "verdict"


class ValidatorRegistry(Protocol):
    """The registry port of the validator (``driftloop.registry.MlflowRegistry`` has it)."""

    def get_alias(self, name: str, alias: str) -> ModelVersionRef: ...

    def load_sklearn_model(self, uri: str) -> Any: ...

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float], dict[str, str]]: ...

    def version_tags(self, name: str, version: int) -> dict[str, str]: ...

    def set_version_tags(self, name: str, version: int, tags: Mapping[str, str]) -> None: ...

    def log_run_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None: ...


class ValidatorWorker:
    def __init__(
        self,
        log_: EventLog,
        registry: ValidatorRegistry,
        settings: ValidatorSettings,
        validation: ValidationSettings | None = None,
        *,
        clock: Clock = time.time,
        metrics: ValidatorMetrics | None = None,
    ) -> None:
        self.log = log_
        self.registry = registry
        self.settings = settings
        self.validation = validation or ValidationSettings()
        self.clock = clock
        self.metrics = metrics or ValidatorMetrics()
        self.store = StateStore(settings.state_path())
        self.state: ValidatorState | None = None
        self.consumer: Consumer | None = None
        self.status = "starting"
        self._assigned: set[TopicPartition] = set()
        self._rows: list[LabelledExample] = []  # fresh rows of the run, not fed yet
        self._due: dict[str, float] = {}
        self._registry_failures = 0
        self._said: dict[str, str] = {}  # topic -> last message logged about it
        self._cannot_validate: dict[int, str] = {}  # challenger version -> why (settings, models)
        self._last_save = clock()
        self._dirty = False

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        try:
            while not should_stop():
                if self.step() == 0 and self.consumer is None:
                    time.sleep(0.5)
            if self.state is not None:
                self.save_state()
        finally:
            self.close()

    def step(self) -> int:
        """Look at the registry when due, poll the topic once, feed fresh rows; returns records read."""
        now = self.clock()
        if self.state is None:
            self.state = self._load_state()
        if now >= self._due.get("registry", 0.0):
            self._watch_registry(now)
        if self.consumer is None and not self._open_consumer(now):
            return 0
        assert self.consumer is not None
        records = self._sync(self.consumer.poll(self.settings.poll_timeout_s, self.settings.poll_max_records))
        for record in records:
            self._take(record)
        self._feed(now)
        if self._dirty and self.clock() - self._last_save >= self.settings.state_interval_s:
            self.save_state()
        self._refresh_gauges()
        return len(records)

    def save_state(self) -> None:
        """Write the state durably, then commit the offsets it holds."""
        state = self.state
        if state is None:
            return
        self._feed(self.clock())  # rows read are fed before their offsets are saved
        self.store.write(state)
        self.metrics.state_saves.inc()
        self._last_save = self.clock()
        self._dirty = False
        owned = {tp: o for tp, o in state.offsets.items() if tp in self._assigned}
        if self.consumer is not None and owned:
            try:
                self.consumer.commit(owned)
            except CommitFailedError as exc:  # a rebalance: the state file still holds the offsets
                log.warning("validator: offset commit failed (%s); the next save commits", exc)

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
        self.consumer = None

    # -- state ---------------------------------------------------------------------------------------
    def _fresh_state(self, source: StateSource) -> ValidatorState:
        return ValidatorState(
            offsets={}, deduper=LabelledDeduper(self.settings.dedupe_window), source=source.as_dict()
        )

    def _load_state(self) -> ValidatorState:
        s = self.settings
        source = StateSource(self.log.identity(), s.group_id, (s.labelled_topic,))
        saved = self.store.load()
        if saved is None:
            return self._fresh_state(source)
        problem = source_problem(
            saved.source, source, saved.offsets, end_offsets_of(self.log.end_offsets), self._committed
        )
        if problem is not None:
            if not s.reset_state:
                self.close()
                raise ValidatorStateSourceError(
                    refusal(
                        "validator state",
                        self.store.path,
                        problem,
                        "DRIFTLOOP_VALIDATOR_RESET_STATE",
                        "DRIFTLOOP_VALIDATOR_STATE_DIR",
                    )
                )
            aside = move_aside(self.store.path)
            log.warning(
                "validator: DRIFTLOOP_VALIDATOR_RESET_STATE: state %s moved to %s (the validation in it "
                "starts again); reading from the committed offsets of %s: %s",
                self.store.path,
                aside,
                source.log,
                problem,
            )
            return self._fresh_state(source)
        if saved.source is None:
            log.warning("validator: state %s had no source; adopted for %s", self.store.path, source.log)
            saved.source = source.as_dict()
        run = saved.run
        doing = "no validation in progress"
        if run is not None:
            doing = f"challenger v{run.challenger.version} vs champion v{run.champion.version}, "
            doing += f"n={run.result().scored}"
        log.info(
            "validator: resumed from %s (%s; %d verdicts to write)",
            self.store.path,
            doing,
            len(saved.unpublished),
        )
        return saved

    def _committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset (for a state without source); opens the consumer early."""
        if self.consumer is None:
            try:
                self.log.partitions_for(self.settings.labelled_topic)
            except EventLogError:
                return None
            self.consumer = self.log.consumer(self.settings.group_id, [self.settings.labelled_topic])
        return self.consumer.committed(tp)

    # -- the registry --------------------------------------------------------------------------------
    def _watch_registry(self, now: float) -> None:
        try:
            self._write_pending()
            champion = self._alias(self.settings.champion_alias)
            challenger = self._alias(self.settings.challenger_alias)
            self._follow(champion, challenger, now)
        except ValidatorStateError:
            raise
        except Exception as exc:  # MLflow unreachable or failing: retried, never a verdict without evidence
            self._registry_failures += 1
            delay = min(
                self.settings.registry_retry_s * 2 ** (self._registry_failures - 1),
                self.settings.registry_retry_max_s,
            )
            self._due["registry"] = now + delay
            self.metrics.registry_failures.inc()
            self.metrics.waiting.labels("registry").set(1)
            self.status = f"waiting: registry failing ({exc!r})"
            log.warning(
                "validator: registry call failed (attempt %d): %r; retrying in %.0f s (no verdict is written "
                "meanwhile)",
                self._registry_failures,
                exc,
                delay,
            )
            return
        if self._registry_failures:
            log.info("validator: registry reachable again after %d failed attempts", self._registry_failures)
        self._registry_failures = 0
        self.metrics.waiting.labels("registry").set(0)
        self._due["registry"] = now + self.settings.registry_poll_s

    def _alias(self, alias: str) -> ModelVersionRef | None:
        try:
            return self.registry.get_alias(self.settings.model_name, alias)
        except RegistryError:
            return None

    def _follow(
        self, champion: ModelVersionRef | None, challenger: ModelVersionRef | None, now: float
    ) -> None:
        state = self.state
        assert state is not None
        name = self.settings.model_name
        run = state.run
        if run is not None and challenger is not None and challenger.version != run.challenger.version:
            self._supersede(run, challenger.version)
            run = None
        if run is not None and champion is not None and champion.version != run.champion.version:
            log.info(
                "validator: champion moved from v%d to v%d: validation of challenger v%d restarts against "
                "v%d on fresh rows",
                run.champion.version,
                champion.version,
                run.challenger.version,
                champion.version,
            )
            self._drop_run()
            run = None
        self._waiting("champion", champion is None)
        self._waiting("challenger", champion is not None and challenger is None)
        if champion is None:
            self._say(
                "watch", f"waiting: no version of {name!r} has alias {self.settings.champion_alias!r} yet"
            )
            return
        if challenger is None:
            self._say(
                "watch",
                f"waiting: no challenger yet (no version of {name!r} has alias "
                f"{self.settings.challenger_alias!r}; the trainer sets it on each candidate)",
            )
            return
        if run is not None:
            self._say(
                "watch",
                f"validating challenger v{run.challenger.version} against champion v{champion.version}",
            )
            return
        version = challenger.version
        if version == champion.version:
            self._say("watch", f"idle: challenger v{version} is the champion; waiting for a new challenger")
            return
        if any(r.challenger.version == version for r in state.unpublished):
            return  # decided; its verdict is written as soon as the registry takes it
        if version in self._cannot_validate:
            self._say(
                "watch", f"idle: cannot validate challenger v{version}: {self._cannot_validate[version]}"
            )
            return
        verdict = self.registry.version_tags(name, version).get(VERDICT_TAG)
        if verdict is not None:
            self._say(
                "watch", f"idle: challenger v{version} already has verdict {verdict!r}; waiting for a new one"
            )
            return
        self._start(champion, challenger, now)

    def _start(self, champion: ModelVersionRef, challenger: ModelVersionRef, now: float) -> None:
        state = self.state
        assert state is not None
        champion_model = self.registry.load_sklearn_model(champion.uri)
        challenger_model = self.registry.load_sklearn_model(challenger.uri)
        params: dict[str, str] = {}
        if challenger.run_id:
            params = self.registry.run_data(challenger.run_id)[0]
        window = TrainingWindow.from_params(params, self.settings.labelled_topic)
        n_champion = getattr(champion_model, "n_features_in_", None)
        n_challenger = getattr(challenger_model, "n_features_in_", None)
        try:
            if n_champion is not None and n_challenger is not None and n_champion != n_challenger:
                raise ValidatorConfigError(
                    f"the champion takes {n_champion} features, the challenger {n_challenger}: they cannot "
                    "be scored on the same rows"
                )
            validator = Validator(champion_model, challenger_model, self.validation)
        except ValidatorConfigError as exc:
            self._cannot_validate[challenger.version] = str(exc)
            self.metrics.waiting.labels("config").set(1)
            log.error(
                "validator: cannot validate challenger v%d, no verdict written: %s", challenger.version, exc
            )
            self.status = f"idle: cannot validate challenger v{challenger.version}: {exc}"
            return
        self.metrics.waiting.labels("config").set(0)
        state.run = ValidationRun(challenger, champion, validator, window, started_at=now)
        self._dirty = True
        s = self.validation
        fresh = ", ".join(
            f"{tp.topic}/{tp.partition} from offset {o}" for tp, o in sorted(window.next_offsets.items())
        )
        log.info(
            "validator: validating challenger v%d against champion v%d (%s loss, bound %g, alpha %g, %s "
            "margin %g, %d to %d examples) on labelled rows read from now on%s",
            challenger.version,
            champion.version,
            validator.loss.name,
            validator.loss.bound,
            s.alpha,
            s.mode,
            s.margin,
            s.min_examples,
            s.max_examples,
            f", after its data window ({fresh})" if fresh else "",
        )
        self._say(
            "watch", f"validating challenger v{challenger.version} against champion v{champion.version}"
        )

    def _supersede(self, run: ValidationRun, newer: int) -> None:
        state = self.state
        assert state is not None
        result = run.result()
        tags = {
            VERDICT_TAG: "superseded",
            TAG_PREFIX + "superseded_by": str(newer),
            TAG_PREFIX + "n": str(result.scored),
            TAG_PREFIX + "champion_version": str(run.champion.version),
        }
        log.info(
            "validator: challenger moved from v%d to v%d: v%d abandoned after %d paired examples (tagged "
            "superseded); v%d is validated on fresh rows",
            run.challenger.version,
            newer,
            run.challenger.version,
            result.scored,
            newer,
        )
        self._drop_run()
        state.superseded.append((run.challenger.version, tags))
        self._write_pending()

    def _drop_run(self) -> None:
        assert self.state is not None
        self.state.run = None
        self._rows.clear()
        self._dirty = True

    def _write_pending(self) -> None:
        """Write verdicts decided and superseded tags not written yet; a version with a verdict tag
        already is never written again."""
        state = self.state
        assert state is not None
        name = self.settings.model_name
        while state.superseded:
            version, tags = state.superseded[0]
            if VERDICT_TAG not in self.registry.version_tags(name, version):
                self.registry.set_version_tags(name, version, tags)
                self.metrics.verdicts.labels("superseded").inc()
            state.superseded.pop(0)
            self.save_state()
        while state.unpublished:
            run = state.unpublished[0]
            version = run.challenger.version
            existing = self.registry.version_tags(name, version).get(VERDICT_TAG)
            result = run.result()
            if existing is None:
                skipped = sum(run.skipped.values())
                self.registry.set_version_tags(
                    name,
                    version,
                    {
                        TAG_PREFIX + "champion_version": str(run.champion.version),
                        TAG_PREFIX + "rows_skipped": str(skipped),
                    },
                )
                publish_verdict(self.registry, name, version, run.challenger.run_id, result)
                self.metrics.verdicts.labels(result.decision.verdict).inc()
                log.info("validator: verdict %r written to %s v%d", result.decision.verdict, name, version)
            else:
                log.warning(
                    "validator: %s v%d already has verdict %r; %r not written again",
                    name,
                    version,
                    existing,
                    result.decision.verdict,
                )
            state.unpublished.pop(0)
            self.save_state()

    # -- reading -------------------------------------------------------------------------------------
    def _open_consumer(self, now: float) -> bool:
        topic = self.settings.labelled_topic
        if now < self._due.get("topic", 0.0):
            return False
        try:
            self.log.partitions_for(topic)
        except EventLogError:
            self._due["topic"] = now + self.settings.topic_retry_s
            self.metrics.waiting.labels("topic").set(1)
            self._say("topic", f"waiting: no labelled topic {topic!r} yet (the joiner creates it)")
            return False
        self.metrics.waiting.labels("topic").set(0)
        self._say("topic", f"reading {topic!r} as group {self.settings.group_id!r}")
        self.consumer = self.log.consumer(self.settings.group_id, [topic])
        return True

    def _sync(self, records: list[Record]) -> list[Record]:
        """Seek newly assigned partitions to the saved offsets; drop records already read."""
        assert self.consumer is not None and self.state is not None
        offsets = self.state.offsets
        owned = self.consumer.assignment()
        seeked: set[TopicPartition] = set()
        for tp in owned - self._assigned:
            if tp in offsets:
                self.consumer.seek(tp, offsets[tp])
                seeked.add(tp)
        self._assigned = set(owned)
        return [
            r for r in records if r.tp not in seeked and r.tp in owned and r.offset >= offsets.get(r.tp, 0)
        ]

    def _take(self, record: Record) -> None:
        state = self.state
        assert state is not None
        state.offsets[record.tp] = record.offset + 1
        self._dirty = True
        self.metrics.read.inc()
        before = state.deduper.duplicates
        try:
            examples = list(state.deduper.feed([record.value]))
        except UndecodableRecord as exc:
            self._skip("undecodable")
            log.warning("validator: labelled record %s@%d undecodable: %s", record.tp, record.offset, exc)
            return
        if state.deduper.duplicates > before:
            self._skip("duplicate", state.deduper.duplicates - before)
        run = state.run
        for example in examples:  # one, or the examples of a batch record (``labelled_batch``)
            if run is None:
                self._skip("idle")
            elif run.window.trained_on(record.tp, record.offset, example.event_time):
                self._skip("trained_on")
            elif not _usable_features(
                example.features, getattr(run.validator.champion, "n_features_in_", None)
            ):
                self._skip("features")
            elif not _usable_truth(run.validator, example.truth):
                self._skip("truth")
            else:
                self._rows.append(example)

    def _skip(self, reason: str, count: int = 1) -> None:
        self.metrics.skipped.labels(reason).inc(count)
        run = self.state.run if self.state is not None else None
        if run is not None:
            run.skipped[reason] += count

    # -- validating ----------------------------------------------------------------------------------
    def _feed(self, now: float) -> None:
        state = self.state
        run = state.run if state is not None else None
        if run is None or not self._rows:
            return
        rows, self._rows = self._rows, []
        validator = run.validator
        size = self.validation.batch_size
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            try:
                chunk = self._finite_predictions(validator, chunk)
            except ValidatorConfigError as exc:  # e.g. the log loss on a model without predict_proba
                self._cannot_validate[run.challenger.version] = str(exc)
                log.error(
                    "validator: validation of v%d abandoned, no verdict written: %s",
                    run.challenger.version,
                    exc,
                )
                self._drop_run()
                return
            before = validator.result()
            decision = validator.observe(chunk)
            after = validator.result()
            self.metrics.scored.inc(after.scored - before.scored)
            self.metrics.clipped.inc(after.clipped - before.clipped)
            if after.unused > before.unused:
                self._skip("unused", after.unused - before.unused)
            if decision.concluded:
                rest = len(rows) - (start + size)
                if rest > 0:
                    self._skip("unused", rest)
                self._conclude(run, now)
                return

    def _finite_predictions(self, validator: Validator, rows: list[LabelledExample]) -> list[LabelledExample]:
        """The rows on which both models' losses are finite (a model may return NaN for some inputs)."""
        X = np.asarray([r.features for r in rows], dtype=np.float64)
        truth = np.asarray([r.truth for r in rows])
        ok = np.ones(len(rows), dtype=bool)
        for model in (validator.champion, validator.challenger):
            ok &= np.isfinite(np.asarray(validator.loss(model, X, truth), dtype=np.float64))
        if not ok.all():
            self._skip("prediction", int((~ok).sum()))
        return [r for r, keep in zip(rows, ok, strict=True) if keep]

    def _conclude(self, run: ValidationRun, now: float) -> None:
        state = self.state
        assert state is not None
        result = run.result()
        log.info("validator: %s", describe(run, result))
        state.run = None
        state.unpublished.append(run)
        self._rows.clear()
        self.save_state()  # the verdict's evidence is durable before the verdict is written
        self._due["registry"] = now  # written at the next step (retried with backoff if MLflow is down)

    # -- saying and gauges ---------------------------------------------------------------------------
    def _say(self, topic: str, message: str) -> None:
        self.status = message
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.info("validator: %s", message)

    def _waiting(self, reason: str, waiting: bool) -> None:
        self.metrics.waiting.labels(reason).set(1 if waiting else 0)

    def _refresh_gauges(self) -> None:
        run = self.state.run if self.state is not None else None
        m = self.metrics
        if run is None:
            m.challenger_version.set(0)
            m.examples.set(0)
            return
        d = run.validator.test.decision()
        m.challenger_version.set(run.challenger.version)
        m.champion_version.set(run.champion.version)
        m.bound.labels("lower").set(d.lower)
        m.bound.labels("upper").set(d.upper)
        m.threshold.set(d.threshold)
        m.examples.set(d.n)
        if not math.isnan(d.mean):
            m.mean.set(d.mean)


def describe(run: ValidationRun, result: ValidationResult) -> str:
    """One line: the verdict, which test decided it, the error rate, on how many examples."""
    d = result.decision
    if d.verdict == "pass":
        why = f"upper bound {d.upper:.4g} < threshold {d.threshold:g}"
    elif d.verdict == "fail":
        why = f"lower bound {d.lower:.4g} > threshold {d.threshold:g}"
    else:
        why = f"budget of {d.n} examples used with the threshold {d.threshold:g} inside the bounds"
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(run.skipped.items()) if v) or "none"
    return (
        f"challenger v{run.challenger.version} vs champion v{run.champion.version}: {d.verdict.upper()} "
        f"({why}) on {d.n} paired examples; E[loss(challenger) - loss(champion)] in [{d.lower:.4g}, "
        f"{d.upper:.4g}], mean {d.mean:.4g}; decided by the anytime-valid paired test ({d.method}) at "
        f"alpha={d.alpha:g} ({d.mode}, margin {d.margin:g}, {result.loss} loss clipped to {d.bound:g}, "
        f"{result.clipped} clipped); rows skipped: {skipped}"
    )


def _usable_features(features: tuple[float, ...], n_features: int | None) -> bool:
    if n_features is not None and len(features) != n_features:
        return False
    try:
        return bool(np.isfinite(np.asarray(features, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return False


def _usable_truth(validator: Validator, truth: Any) -> bool:
    """A regression loss needs a finite number; a classification loss a label of the classes' type."""
    if validator.loss.name in ("absolute", "squared"):
        return isinstance(truth, float) and math.isfinite(truth)
    classes = getattr(validator.champion, "classes_", None)
    if classes is None or len(classes) == 0:
        return True
    numeric = np.issubdtype(np.asarray(classes).dtype, np.number)
    if numeric:
        return isinstance(truth, float) and math.isfinite(truth)
    return isinstance(truth, str)
