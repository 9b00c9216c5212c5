"""The drift monitor's loop: poll the request log, pair each model call, window its rows, judge closed
windows, emit drift events, and checkpoint (events flushed, state durable, then offsets committed).

Windows span every partition of the request log (Seldon writes it without a key), so one monitor
process owns the consumer group; a second member would see only some partitions.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driftloop.eventlog import CommitFailedError, EventLog, TopicPartition
from driftloop.eventlog.state_source import (
    StateSource,
    end_offsets_of,
    refusal,
    source_problem,
)
from driftloop.seldon_log import MalformedLogEvent, parse_event
from driftloop.settings import StateSettings
from driftloop.statestore import open_state_store
from driftloop_feedback.monitor.alarms import Alarm
from driftloop_feedback.monitor.errors import MonitorStateSourceError
from driftloop_feedback.monitor.metrics import MonitorMetrics
from driftloop_feedback.monitor.pairing import CallPairer, UnusablePayload
from driftloop_feedback.monitor.recent import RecentRows
from driftloop_feedback.monitor.references import ReferenceSource, VersionDetectors
from driftloop_feedback.monitor.settings import MonitorSettings
from driftloop_feedback.monitor.state import StateFile
from driftloop_feedback.monitor.verdict import DriftVerdict, TestSpec, judge_and_keep
from driftloop_feedback.monitor.windows import ClosedWindow, WindowBook

log = logging.getLogger(__name__)
Clock = Callable[[], float]

SKIP_MALFORMED = "malformed"
SKIP_REPLAYED = "already_in_state"  # re-read after a restart, already counted in the restored state


@dataclass(frozen=True)
class JudgedWindow:
    window: ClosedWindow
    verdict: DriftVerdict


def default_state_dir(settings: MonitorSettings, state: StateSettings | None = None) -> Path:
    if settings.state_dir is not None:
        return settings.state_dir
    return (state or StateSettings()).resolved_home() / "monitor"


class DriftMonitor:
    def __init__(
        self,
        event_log: EventLog,
        settings: MonitorSettings,
        references: ReferenceSource,
        *,
        state_dir: Path,
        clock: Clock = time.time,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or MonitorMetrics()
        event_log.create_topic(settings.drift_topic, 1)
        event_log.create_topic(settings.alarm_topic, 1)
        self.log = event_log
        self.source = StateSource(event_log.identity(), settings.group_id, (settings.request_log_topic,))
        self.consumer = event_log.consumer(settings.group_id, [settings.request_log_topic])
        self.producer = event_log.producer()
        self.pairer = CallPairer(
            model_node=settings.model_node,
            features_tensor=settings.features_tensor,
            outlier_flag_tensor=settings.outlier_flag_tensor,
            pair_ttl_s=settings.pair_ttl_s,
            max_pending=settings.max_pending,
            dedupe_memory=settings.dedupe_memory,
        )
        self.windows = WindowBook(
            window_rows=settings.window_rows, window_s=settings.window_s, outlier_test=settings.outlier_test()
        )
        self.detectors = VersionDetectors(
            references,
            kind=settings.detector_kind,
            options=settings.detector_options(),
            exclude_features=settings.exclude_features,
            retry_s=settings.reference_retry_s,
            clock=clock,
        )
        self.spec = TestSpec(
            settings.detector_kind,
            settings.correction,
            settings.alpha,
            settings.min_rows,
            settings.outlier_test(),
            settings.serial,
        )
        self.recent = RecentRows(settings.recent_rows) if settings.reference == "recent" else None
        # DRIFTLOOP_STATE_STORE: <state_dir>/monitor.snapshot, or that key in the compacted state topic
        self.state = StateFile(
            state_dir, open_state_store(event_log, state_dir, f"monitor/{settings.group_id}")
        )
        self.next_offsets: dict[TopicPartition, int] = {}
        self.skipped: Counter[str] = Counter()
        self.records_read = 0
        self._exported: dict[tuple[str, str], int] = {}
        self._last_checkpoint = clock()
        try:
            self._restore()
        except BaseException:
            self.close()  # leave the group: a member that stays would hold partitions
            raise

    def _restore(self) -> None:
        saved = self.state.load()
        if saved is None:
            return
        problem = source_problem(
            saved["source"],
            self.source,
            saved["offsets"],
            end_offsets_of(self.log.end_offsets),
            self.consumer.committed,
        )
        if problem is not None:
            if not self.settings.reset_state:
                raise MonitorStateSourceError(
                    refusal(
                        "monitor state",
                        self.state.where(),
                        problem,
                        "DRIFTLOOP_MONITOR_RESET_STATE",
                        "DRIFTLOOP_MONITOR_STATE_DIR",
                    )
                )
            aside = self.state.discard()
            log.warning(
                "monitor: DRIFTLOOP_MONITOR_RESET_STATE: state %s moved to %s (its open windows are "
                "dropped); reading from the committed offsets of %s: %s",
                self.state.where(),
                aside,
                self.source.log,
                problem,
            )
            return
        if saved["source"] is None:
            log.warning(
                "monitor: state %s had no source; adopted for %s", self.state.where(), self.source.log
            )
        self.pairer.restore(saved["pairer"])
        self.windows.restore(saved["windows"])
        if self.recent is not None:
            self.recent.restore(saved.get("recent"))
        self.next_offsets = dict(saved["offsets"])
        log.info(
            "monitor: state restored (%d open windows, %d rows, %d pending requests)",
            len(self.windows.open),
            self.windows.open_rows,
            len(self.pairer.pending),
        )

    # -- the loop ----------------------------------------------------------------------------------
    def step(self, poll_timeout_s: float = 0.2) -> list[JudgedWindow]:
        records = self.consumer.poll(poll_timeout_s, self.settings.poll_max_records)
        self.records_read += len(records)
        now = self.clock()
        closed: list[ClosedWindow] = []
        for record in records:
            tp = record.tp
            if record.offset < self.next_offsets.get(tp, 0):
                self.skipped[SKIP_REPLAYED] += 1
                continue
            self.next_offsets[tp] = record.offset + 1
            try:
                event = parse_event(record.headers, record.value)
            except MalformedLogEvent as exc:
                self.skipped[SKIP_MALFORMED] += 1
                log.warning("monitor: %s@%d skipped: %s", tp, record.offset, exc)
                continue
            try:
                call = self.pairer.on_event(event, record.timestamp_ms, now)
            except UnusablePayload as exc:
                log.warning("monitor: request %s skipped: %s", event.request_id, exc)
                continue
            if call is not None:
                self.metrics.rows.labels(call.endpoint, call.model_version).inc(call.features.shape[0])
                closed.extend(self.windows.add(call, now))
        self.pairer.expire(now)
        closed.extend(self.windows.tick(now))
        for alarm in self.windows.take_alarms():
            self._emit_alarm(alarm)
        judged = [self._emit(w) for w in closed]
        self._export_counts()
        if now - self._last_checkpoint >= self.settings.checkpoint_interval_s:
            self.checkpoint()
        return judged

    def _emit(self, window: ClosedWindow) -> JudgedWindow:
        verdict = judge_and_keep(window, self.detectors, self.spec, self.recent)
        self.producer.send(
            self.settings.drift_topic, verdict.to_json(), key=verdict.predictor.encode() or None
        )
        self.metrics.verdict(verdict)
        if verdict.is_drift:
            log.info("monitor: drift in %s (%d rows)", verdict.window_id, verdict.rows)
        return JudgedWindow(window, verdict)

    def _emit_alarm(self, alarm: Alarm) -> None:
        self.producer.send(self.settings.alarm_topic, alarm.to_json(), key=alarm.predictor.encode() or None)
        self.metrics.alarms.labels(alarm.predictor, alarm.model_version, alarm.kind).inc()
        log.info(
            "monitor: %s alarm in %s: %d of %d rows flagged (critical %d for %d rows, p=%.2g, alpha %g)",
            alarm.kind,
            alarm.window_id,
            alarm.count,
            alarm.rows,
            alarm.critical_count,
            alarm.tested_rows,
            alarm.p_value,
            alarm.alpha,
        )

    def _export_counts(self) -> None:
        """Bring the Prometheus counters up to the pairer's and windows' own counts."""
        counts = [
            (self.metrics.skipped, "skipped", self.pairer.skipped + self.skipped),
            (self.metrics.unpaired, "unpaired", self.pairer.unpaired),
            (self.metrics.skipped_rows, "rows", Counter(feature_count_mismatch=self.windows.mismatched_rows)),
        ]
        for family, name, by_reason in counts:
            for reason, n in by_reason.items():
                delta = n - self._exported.get((name, reason), 0)
                if delta > 0:
                    family.labels(reason).inc(delta)
                    self._exported[(name, reason)] = n
        self.metrics.pending.set(len(self.pairer.pending))
        self.metrics.open_rows.set(self.windows.open_rows)

    def checkpoint(self) -> None:
        """Drift events flushed, then the state covering every record read written, then committed."""
        self.producer.flush()
        offsets = dict(self.next_offsets)
        self.state.save(
            {
                "source": self.source.as_dict(),
                "pairer": self.pairer.snapshot(),
                "windows": self.windows.snapshot(),
                "recent": None if self.recent is None else self.recent.snapshot(),
                "offsets": offsets,
            }
        )
        owned = self.consumer.assignment()
        commits = {tp: o for tp, o in offsets.items() if tp in owned}
        try:
            if commits:
                self.consumer.commit(commits)
        except CommitFailedError as exc:  # the snapshot's offsets still guard against re-counting
            log.warning("monitor: %s", exc)
        self.metrics.checkpoints.inc()
        self._last_checkpoint = self.clock()

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            self.step()
        self.checkpoint()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
        self.state.close()
