"""The validator worker's state at start: the saved one when it belongs to this log, group and topic,
else a fresh one (``DRIFTLOOP_VALIDATOR_RESET_STATE``) or a refusal naming both sources and the ways out.

A state saved without a source is adopted, and bound to this log, only where the log vouches for it
(``driftloop.eventlog.state_source``).
"""

from __future__ import annotations

from collections.abc import Callable

from driftloop.eventlog import EventLog, TopicPartition
from driftloop.eventlog.state_source import StateSource, end_offsets_of, move_aside, refusal, source_problem
from driftloop_feedback.labelled import LabelledDeduper
from driftloop_feedback.validate.settings import ValidatorSettings
from driftloop_feedback.validate.state import StateStore, ValidatorState, ValidatorStateSourceError
from driftloop_feedback.validate.worker_log import log


def fresh_state(settings: ValidatorSettings, source: StateSource) -> ValidatorState:
    return ValidatorState(
        offsets={}, deduper=LabelledDeduper(settings.dedupe_window), source=source.as_dict()
    )


def load_state(
    log_: EventLog,
    settings: ValidatorSettings,
    store: StateStore,
    committed: Callable[[TopicPartition], int | None],
    close: Callable[[], None],
) -> ValidatorState:
    """The state to run with; ``committed`` reads the group's offsets, ``close`` leaves the group before
    a refusal (``ValidatorStateSourceError``)."""
    s = settings
    source = StateSource(log_.identity(), s.group_id, (s.labelled_topic,))
    saved = store.load()
    if saved is None:
        return fresh_state(s, source)
    problem = source_problem(saved.source, source, saved.offsets, end_offsets_of(log_.end_offsets), committed)
    if problem is not None:
        if not s.reset_state:
            close()
            raise ValidatorStateSourceError(
                refusal(
                    "validator state",
                    store.path,
                    problem,
                    "DRIFTLOOP_VALIDATOR_RESET_STATE",
                    "DRIFTLOOP_VALIDATOR_STATE_DIR",
                )
            )
        aside = move_aside(store.path)
        log.warning(
            "validator: DRIFTLOOP_VALIDATOR_RESET_STATE: state %s moved to %s (the validation in it "
            "starts again); reading from the committed offsets of %s: %s",
            store.path,
            aside,
            source.log,
            problem,
        )
        return fresh_state(s, source)
    if saved.source is None:
        log.warning("validator: state %s had no source; adopted for %s", store.path, source.log)
        saved.source = source.as_dict()
    run = saved.run
    doing = "no validation in progress"
    if run is not None:
        doing = f"challenger v{run.challenger.version} vs champion v{run.champion.version}, "
        doing += f"n={run.result().scored}"
    log.info(
        "validator: resumed from %s (%s; %d verdicts to write)",
        store.path,
        doing,
        len(saved.unpublished),
    )
    return saved
