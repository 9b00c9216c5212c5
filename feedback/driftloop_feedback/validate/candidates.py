"""Which challenger the validator worker validates against which champion (its per-candidate state).

``Candidates.follow`` takes the versions the aliases ``champion`` and ``challenger`` point at: a new
challenger abandons the validation in progress (tagged ``superseded``), a new champion restarts it on
fresh rows, and a challenger without a verdict gets a ``ValidationRun`` (both models loaded, its data
window read from its run's params, the settings checked). A challenger the settings cannot judge is
remembered with the reason (``cannot_validate``) and never validated.
"""

from __future__ import annotations

from typing import Protocol

from driftloop.registry import ModelVersionRef
from driftloop_feedback.validate.errors import ValidatorConfigError
from driftloop_feedback.validate.gauges import set_waiting
from driftloop_feedback.validate.metrics import ValidatorMetrics
from driftloop_feedback.validate.settings import ValidationSettings, ValidatorSettings
from driftloop_feedback.validate.state import TrainingWindow, ValidationRun, ValidatorState
from driftloop_feedback.validate.status_line import StatusLine
from driftloop_feedback.validate.validator import Validator
from driftloop_feedback.validate.verdict_writer import VERDICT_TAG, ValidatorRegistry, superseded_tags
from driftloop_feedback.validate.worker_log import log


class RunOwner(Protocol):
    """The worker holding the state: what following the aliases asks of it."""

    def drop_run(self) -> None:
        """Abandon the run in progress and its rows not fed yet."""

    def write_pending(self) -> None:
        """Write the verdicts and superseded tags not written yet."""

    def mark_dirty(self) -> None:
        """The state changed: save it at the next interval."""


class Candidates:
    def __init__(
        self,
        registry: ValidatorRegistry,
        settings: ValidatorSettings,
        validation: ValidationSettings,
        metrics: ValidatorMetrics,
        status: StatusLine,
        owner: RunOwner,
    ) -> None:
        self.registry = registry
        self.settings = settings
        self.validation = validation
        self.metrics = metrics
        self.status = status
        self.owner = owner
        self.cannot_validate: dict[int, str] = {}  # challenger version -> why (settings, models)

    def follow(
        self,
        state: ValidatorState,
        champion: ModelVersionRef | None,
        challenger: ModelVersionRef | None,
        now: float,
    ) -> None:
        name = self.settings.model_name
        run = state.run
        if run is not None and challenger is not None and challenger.version != run.challenger.version:
            self._supersede(state, run, challenger.version)
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
            self.owner.drop_run()
            run = None
        set_waiting(self.metrics, "champion", champion is None)
        set_waiting(self.metrics, "challenger", champion is not None and challenger is None)
        if champion is None:
            self.status.say(
                "watch", f"waiting: no version of {name!r} has alias {self.settings.champion_alias!r} yet"
            )
            return
        if challenger is None:
            self.status.say(
                "watch",
                f"waiting: no challenger yet (no version of {name!r} has alias "
                f"{self.settings.challenger_alias!r}; the trainer sets it on each candidate)",
            )
            return
        if run is not None:
            self.status.say(
                "watch",
                f"validating challenger v{run.challenger.version} against champion v{champion.version}",
            )
            return
        version = challenger.version
        if version == champion.version:
            self.status.say(
                "watch", f"idle: challenger v{version} is the champion; waiting for a new challenger"
            )
            return
        if any(r.challenger.version == version for r in state.unpublished):
            return  # decided; its verdict is written as soon as the registry takes it
        if version in self.cannot_validate:
            self.status.say(
                "watch", f"idle: cannot validate challenger v{version}: {self.cannot_validate[version]}"
            )
            return
        verdict = self.registry.version_tags(name, version).get(VERDICT_TAG)
        if verdict is not None:
            self.status.say(
                "watch", f"idle: challenger v{version} already has verdict {verdict!r}; waiting for a new one"
            )
            return
        self._start(state, champion, challenger, now)

    def _start(
        self, state: ValidatorState, champion: ModelVersionRef, challenger: ModelVersionRef, now: float
    ) -> None:
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
            self.cannot_validate[challenger.version] = str(exc)
            self.metrics.waiting.labels("config").set(1)
            log.error(
                "validator: cannot validate challenger v%d, no verdict written: %s", challenger.version, exc
            )
            self.status.text = f"idle: cannot validate challenger v{challenger.version}: {exc}"
            return
        self.metrics.waiting.labels("config").set(0)
        state.run = ValidationRun(challenger, champion, validator, window, started_at=now)
        self.owner.mark_dirty()
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
        self.status.say(
            "watch", f"validating challenger v{challenger.version} against champion v{champion.version}"
        )

    def _supersede(self, state: ValidatorState, run: ValidationRun, newer: int) -> None:
        result = run.result()
        tags = superseded_tags(run, newer)
        log.info(
            "validator: challenger moved from v%d to v%d: v%d abandoned after %d paired examples (tagged "
            "superseded); v%d is validated on fresh rows",
            run.challenger.version,
            newer,
            run.challenger.version,
            result.scored,
            newer,
        )
        self.owner.drop_run()
        state.superseded.append((run.challenger.version, tags))
        self.owner.write_pending()
