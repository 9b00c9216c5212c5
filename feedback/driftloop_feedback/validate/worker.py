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

The pieces: ``candidates`` (which challenger against which champion), ``verdict_writer`` (verdicts and
superseded tags to the registry), ``resume`` (the state at start), ``gauges`` (metrics),
``status_line`` (what it says), ``labelled_stream`` (the rows read and which are fresh); this
module runs the loop and feeds the fresh rows to the test.

Waiting, not crashing: without a champion, a challenger or the labelled topic the worker says so once and
looks again; a failing registry is retried with exponential backoff, and no verdict is written without the
evidence (a verdict decided while MLflow is down waits in the state until it can be written).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from driftloop.eventlog import Consumer, EventLog
from driftloop.registry import ModelVersionRef, RegistryError
from driftloop_feedback.records import LabelledExample
from driftloop_feedback.validate.candidates import Candidates
from driftloop_feedback.validate.errors import ValidatorConfigError
from driftloop_feedback.validate.gauges import count_skipped, refresh_gauges
from driftloop_feedback.validate.labelled_stream import LabelledStream
from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.resume import load_state
from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
from driftloop_feedback.validate.state import StateStore, ValidationRun, ValidatorState, ValidatorStateError
from driftloop_feedback.validate.status_line import StatusLine
from driftloop_feedback.validate.validator import Validator
from driftloop_feedback.validate.verdict_writer import VERDICT_TAG, ValidatorRegistry, describe, write_pending
from driftloop_feedback.validate.worker_log import log

Clock = Callable[[], float]
__all__ = ["VERDICT_TAG", "Clock", "ValidatorRegistry", "ValidatorWorker", "describe"]


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
        self.status_line = StatusLine()
        self.stream = LabelledStream(log_, settings, self.metrics, self.status_line)
        self.candidates = Candidates(
            registry, settings, self.validation, self.metrics, self.status_line, self
        )
        self._due: dict[str, float] = {}
        self._registry_failures = 0
        self._last_save = clock()
        self._dirty = False

    @property
    def status(self) -> str:
        """What the worker is doing or waiting for (the progress line)."""
        return self.status_line.text

    @property
    def consumer(self) -> Consumer | None:
        """The labelled topic's consumer (None until the topic exists, and after ``close``)."""
        return self.stream.consumer

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
            self.state = load_state(self.log, self.settings, self.store, self.stream.committed, self.close)
            self.stream.state = self.state
        if now >= self._due.get("registry", 0.0):
            self._watch_registry(now)
        if self.consumer is None and not self.stream.open(now):
            return 0
        records = self.stream.read()
        if records:
            self._dirty = True
        self._feed(now)
        if self._dirty and self.clock() - self._last_save >= self.settings.state_interval_s:
            self.save_state()
        refresh_gauges(self.metrics, self.state.run if self.state is not None else None)
        return records

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
        self.stream.commit(state.offsets)

    def close(self) -> None:
        self.stream.close()

    # -- the registry --------------------------------------------------------------------------------
    def _watch_registry(self, now: float) -> None:
        try:
            self.write_pending()
            champion = self._alias(self.settings.champion_alias)
            challenger = self._alias(self.settings.challenger_alias)
            assert self.state is not None
            self.candidates.follow(self.state, champion, challenger, now)
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
            self.status_line.text = f"waiting: registry failing ({exc!r})"
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

    # -- the run in progress (``Candidates`` starts and supersedes it) ------------------------------
    def drop_run(self) -> None:
        """Abandon the run in progress and its rows not fed yet."""
        assert self.state is not None
        self.state.run = None
        self.stream.clear_rows()
        self._dirty = True

    def mark_dirty(self) -> None:
        self._dirty = True

    def write_pending(self) -> None:
        """Write verdicts decided and superseded tags not written yet (``verdict_writer``)."""
        assert self.state is not None
        write_pending(self.registry, self.settings.model_name, self.state, self.metrics, self.save_state)

    # -- validating ----------------------------------------------------------------------------------
    def _feed(self, now: float) -> None:
        state = self.state
        run = state.run if state is not None else None
        if run is None or not self.stream.has_rows():
            return
        rows = self.stream.take_rows()
        validator = run.validator
        size = self.validation.batch_size
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            try:
                chunk = self._finite_predictions(validator, chunk)
            except ValidatorConfigError as exc:  # e.g. the log loss on a model without predict_proba
                self.candidates.cannot_validate[run.challenger.version] = str(exc)
                log.error(
                    "validator: validation of v%d abandoned, no verdict written: %s",
                    run.challenger.version,
                    exc,
                )
                self.drop_run()
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
        self.stream.clear_rows()
        self.save_state()  # the verdict's evidence is durable before the verdict is written
        self._due["registry"] = now  # written at the next step (retried with backoff if MLflow is down)

    def _skip(self, reason: str, count: int = 1) -> None:
        count_skipped(self.metrics, self.state, reason, count)
