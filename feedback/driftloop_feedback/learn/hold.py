"""Holding a due candidate while the previous one is still being judged (bounded).

The validator abandons the validation in progress whenever alias ``challenger`` moves (verdict
``superseded``), so a trainer cutting a candidate every few seconds leaves none judged. Before a cut
the worker asks the registry about the version ``challenger`` points at (``look``): it is **in play**
when it is not the champion and either has no ``driftloop.validation.verdict`` tag yet (validation
pending) or has verdict ``pass`` and a rollout that has not concluded (``driftloop.rollout.status``
absent, ``progressing`` or ``interrupted``: the statuses the rollout controller still acts on; it ends
a rollout with ``promoted``, alias ``champion`` moved, or ``rejected`` / ``aborted``). While it is in
play the due trigger is held: nothing is cut, the policy keeps the trigger, and the candidate is cut as
soon as the previous one is concluded, or after ``hold_max_s`` anyway (a dead validator must not freeze
learning). A registry that cannot be read counts as in play until the next look.

``CandidateHold`` is plain state moved by the caller's ``now``:

>>> hold = CandidateHold()
>>> pending = InPlay(7, Stage.VALIDATION, "awaits its validation verdict")
>>> hold.observed(0.0, pending); hold.decide(0.0, hold_max_s=900.0)
<HoldDecision.HOLD: 'hold'>
>>> hold.check_due(3.0, check_s=5.0), hold.check_due(5.0, check_s=5.0)
(False, True)
>>> hold.decide(900.0, hold_max_s=900.0)
<HoldDecision.TIMEOUT: 'timeout'>
>>> hold.observed(6.0, None); hold.decide(6.0, hold_max_s=900.0)
<HoldDecision.CUT: 'cut'>
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from driftloop.registry import ModelVersionRef, RegistryError

# written by the validator (validate/verdict_writer.py) and the rollout controller (rollout/controller.py)
VERDICT_TAG = "driftloop.validation.verdict"
ROLLOUT_STATUS_TAG = "driftloop.rollout.status"
# a ``pass`` with one of these rollout statuses is still rolled out, or will be (the controller's
# ``RETRIED_STATUSES`` plus the rollout in progress)
ROLLOUT_IN_PLAY = (None, "progressing", "interrupted")


class HoldRegistry(Protocol):
    """What the hold asks of the registry (``driftloop.registry.MlflowRegistry`` has it)."""

    def get_alias(self, name: str, alias: str) -> ModelVersionRef: ...

    def version_tags(self, name: str, version: int) -> dict[str, str]: ...


class Stage(StrEnum):
    VALIDATION = "validation"  # no verdict yet
    ROLLOUT = "rollout"  # verdict pass, rollout not concluded
    REGISTRATION = "registration"  # a candidate of this trainer cut, not registered yet
    CHAMPION_MOVED = "champion_moved"  # promoted: the challenger restarts from the new champion first
    UNREADABLE = "unreadable"  # the registry could not be read


class HoldDecision(StrEnum):
    CUT = "cut"  # nothing in play: cut now
    HOLD = "hold"
    TIMEOUT = "timeout"  # held ``hold_max_s``: cut anyway


@dataclass(frozen=True)
class InPlay:
    """Why a due candidate waits: the version in play (None when unknown) and what it waits for."""

    version: int | None
    stage: Stage
    detail: str

    def describe(self) -> str:
        who = "the challenger" if self.version is None else f"challenger v{self.version}"
        if self.stage in (Stage.VALIDATION, Stage.ROLLOUT):
            return f"{who} {self.detail}"
        return self.detail


@dataclass(frozen=True)
class Look:
    """One read of the registry: the champion's version and what is in play (None: nothing)."""

    champion: int
    in_play: InPlay | None


def look(registry: HoldRegistry, name: str, champion_alias: str, challenger_alias: str) -> Look:
    """Read the aliases and the challenger's tags. Errors (an unreachable registry, no champion)
    propagate; a missing ``challenger`` alias is nothing in play."""
    champion = registry.get_alias(name, champion_alias).version
    try:
        challenger = registry.get_alias(name, challenger_alias).version
    except RegistryError:  # the champion was read: no version has the alias yet
        return Look(champion, None)
    if challenger == champion:  # promoted (or never cut): nothing to wait for
        return Look(champion, None)
    tags = registry.version_tags(name, challenger)
    verdict = tags.get(VERDICT_TAG)
    if verdict is None:
        return Look(champion, InPlay(challenger, Stage.VALIDATION, "awaits its validation verdict"))
    status = tags.get(ROLLOUT_STATUS_TAG)
    if verdict == "pass" and status in ROLLOUT_IN_PLAY:
        rollout = "not started yet" if status is None else status
        detail = f"passed validation; its rollout is {rollout}"
        return Look(champion, InPlay(challenger, Stage.ROLLOUT, detail))
    return Look(champion, None)


class CandidateHold:
    """Whether a due candidate is held: the last look (``observed``) and since when a trigger waits.

    ``held_since`` is set by the first ``decide`` that holds and cleared by ``release`` (a cut, or
    nothing due any more); ``check_due`` says when the registry may be read again (at most once per
    ``check_s``: the worker asks the policy after every mini-batch)."""

    def __init__(self) -> None:
        self.held_since: float | None = None
        self.checked_at: float | None = None
        self.in_play: InPlay | None = None

    def check_due(self, now: float, *, check_s: float) -> bool:
        return self.checked_at is None or now - self.checked_at >= check_s

    def observed(self, now: float, in_play: InPlay | None) -> None:
        """What is in play as of ``now`` (None: nothing; the next trigger is cut)."""
        self.checked_at = now
        self.in_play = in_play

    def decide(self, now: float, *, hold_max_s: float) -> HoldDecision:
        """For a trigger due at ``now``: cut, hold, or cut anyway (held ``hold_max_s``; 0: never hold)."""
        if hold_max_s == 0 or self.in_play is None:
            return HoldDecision.CUT
        if self.held_since is None:
            self.held_since = now
        if now - self.held_since >= hold_max_s:
            return HoldDecision.TIMEOUT
        return HoldDecision.HOLD

    def held_for(self, now: float) -> float:
        return 0.0 if self.held_since is None else max(0.0, now - self.held_since)

    def release(self) -> None:
        """No trigger waits any more (it was cut, or is no longer due)."""
        self.held_since = None

    def cut(self, now: float) -> None:
        """A candidate was cut: it is in play itself until a look says otherwise."""
        self.release()
        self.observed(now, InPlay(None, Stage.REGISTRATION, "the last candidate was just cut"))
