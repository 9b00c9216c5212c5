"""The trainer's gate before a cut: a due candidate is cut, or held while the previous one is judged.

``CutGate.allows`` is asked for each due trigger. It reads the registry (``hold.look``) at most once
per ``policy.hold_check_s``, keeps what it saw in a ``CandidateHold``, and says whether to cut now.
A hold is logged when it starts, when what it waits for changes, every minute while it lasts, and
when it ends; it shows in the metrics (``driftloop_trainer_candidates_held``,
``..._candidate_held_seconds``, ``..._hold_timeouts_total``, ``..._hold_check_errors_total``,
``..._hold_checks_total``) and in ``status``. A registry that cannot be read never stops the worker:
the candidate waits (the look is retried after ``hold_check_s``, and ``hold_max_s`` still bounds it).
"""

from __future__ import annotations

import logging

from driftloop_feedback.learn.hold import CandidateHold, HoldDecision, HoldRegistry, InPlay, Stage, look
from driftloop_feedback.learn.metrics import TrainerMetrics
from driftloop_feedback.learn.policy import Trigger
from driftloop_feedback.learn.settings import TrainerSettings

log = logging.getLogger("driftloop_feedback.learn.worker")
REMIND_S = 60.0  # a hold that lasts is logged again this often


class CutGate:
    def __init__(self, registry: HoldRegistry, settings: TrainerSettings, metrics: TrainerMetrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.hold = CandidateHold()
        self._logged: tuple[InPlay | None, float] = (None, 0.0)  # what was logged, when

    def allows(self, trigger: Trigger, now: float, *, champion: int, unregistered: int) -> bool:
        """Whether the ``trigger`` due at ``now`` is cut now. ``champion``: the version the challenger
        learns from; ``unregistered``: candidates of this trainer cut and not registered yet."""
        p = self.settings.policy
        hold = self.hold
        if p.hold_max_s == 0:
            return True
        if unregistered:
            hold.observed(
                now, InPlay(None, Stage.REGISTRATION, f"{unregistered} candidate(s) cut, not registered yet")
            )
        elif hold.check_due(now, check_s=p.hold_check_s):
            self._look(now, champion)
        decision = hold.decide(now, hold_max_s=p.hold_max_s)
        in_play, held = hold.in_play, hold.held_for(now)
        if decision is HoldDecision.HOLD:
            assert in_play is not None
            if in_play != self._logged[0] or now - self._logged[1] >= REMIND_S:
                self._logged = (in_play, now)
                log.info(
                    "trainer: a %s candidate is due but held for %.0f s: %s (cut anyway after %.0f s)",
                    trigger.value,
                    held,
                    in_play.describe(),
                    p.hold_max_s,
                )
            return False
        if decision is HoldDecision.TIMEOUT:
            assert in_play is not None
            self.metrics.hold_timeouts.inc()
            log.warning(
                "trainer: the %s candidate was held %.0f s (hold_max_s) while %s: cut anyway",
                trigger.value,
                held,
                in_play.describe(),
            )
        elif hold.held_since is not None:
            log.info(
                "trainer: the %s candidate held for %.0f s is cut: the previous challenger is concluded",
                trigger.value,
                held,
            )
        self._logged = (None, 0.0)
        return True

    def cut(self, now: float) -> None:
        self.hold.cut(now)

    def not_due(self) -> None:
        """The policy has nothing due (a held trigger may have passed, e.g. the champion recovered)."""
        if self.hold.held_since is not None:
            log.info("trainer: the held candidate is no longer due; nothing cut")
            self._logged = (None, 0.0)
        self.hold.release()

    def champion_moved(self) -> bool:
        """The last look saw another champion: the worker restarts the challenger from it first."""
        in_play = self.hold.in_play
        return in_play is not None and in_play.stage is Stage.CHAMPION_MOVED

    def status(self, now: float) -> str | None:
        in_play = self.hold.in_play
        if self.hold.held_since is None or in_play is None:
            return None
        return f"candidate held for {self.hold.held_for(now):.0f} s: {in_play.describe()}"

    def refresh_gauges(self, now: float) -> None:
        held = self.hold.held_since is not None
        self.metrics.candidates_held.set(1 if held else 0)
        self.metrics.candidate_held_seconds.set(self.hold.held_for(now))

    def _look(self, now: float, champion: int) -> None:
        s = self.settings
        try:
            seen = look(self.registry, s.model_name, s.champion_alias, s.challenger_alias)
        except Exception as exc:  # unreachable or failing: the candidate waits, looked for again later
            self.metrics.hold_check_errors.inc()
            log.warning(
                "trainer: cannot read the challenger's verdict from the registry (%r): a due candidate "
                "waits; looking again in %.0f s",
                exc,
                s.policy.hold_check_s,
            )
            # the same words every time: the hold is logged once, the failure at each look (above)
            self.hold.observed(now, InPlay(None, Stage.UNREADABLE, "the registry could not be read"))
            return
        self.metrics.hold_checks.inc()
        in_play = seen.in_play
        if seen.champion != champion:  # promoted: the next candidate is the new champion's child
            in_play = InPlay(
                seen.champion,
                Stage.CHAMPION_MOVED,
                f"the champion moved to v{seen.champion}: the challenger restarts from it first",
            )
        self.hold.observed(now, in_play)
