"""A controller on fakes: fake clock, fake backend, fake registry, fake ingress metrics; the topics are
the in-memory event log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from driftloop_feedback.rollout import (
    FileLease,
    RolloutController,
    RolloutEvent,
    RolloutSettings,
    read_history,
)
from driftloop_feedback.validate import ValidationSettings

from driftloop.eventlog import MemoryEventLog
from tests.rollout.fakes import (
    MODEL,
    FakeBackend,
    FakeClock,
    FakeOps,
    FakeRegistry,
    LabelledProducer,
    Linear,
)

CHAMPION, CANDIDATE = 1, 2


@dataclass
class World:
    tmp: Path
    clock: FakeClock = field(default_factory=FakeClock)
    backend: FakeBackend = field(default_factory=FakeBackend)
    registry: FakeRegistry = field(default_factory=FakeRegistry)
    ops: FakeOps = field(default_factory=FakeOps)
    log: MemoryEventLog = field(default_factory=MemoryEventLog)
    controllers: list[RolloutController] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry.add(CHAMPION, Linear(1.0, 1.0))  # off by 1 on every row
        self.registry.add(CANDIDATE, Linear(1.0, 0.0), **{"driftloop.validation.verdict": "pass"})
        self.registry.aliases = {"champion": CHAMPION, "challenger": CANDIDATE}
        self.labelled = LabelledProducer(self.log)

    def settings(self, **overrides: object) -> RolloutSettings:
        base: dict[str, object] = {
            "step_weights": [10, 25, 50],
            "interval_s": 60.0,
            "threshold": 2,
            "progress_deadline_s": 600.0,
            "lease_ttl_s": 30.0,
            "registry_poll_s": 5.0,
            "poll_timeout_s": 0.0,
            "state_dir": self.tmp / "rollout",
        }
        base.update(overrides)
        return RolloutSettings(**base)  # type: ignore[arg-type]

    def controller(self, holder: str = "ctl-a", **overrides: object) -> RolloutController:
        s = self.settings(**overrides)
        lease = FileLease(s.lease_path(), s.key, s.lease_ttl_s, self.clock, holder=holder)
        validation = ValidationSettings(min_examples=20, loss_bound=5.0, alpha=0.05)
        ctl = RolloutController(
            s, self.backend, self.registry, self.log, lease, self.ops, validation, clock=self.clock
        )
        self.controllers.append(ctl)
        return ctl

    def run(self, ctl: RolloutController, seconds: float, every: float = 10.0) -> None:
        """Tick every ``every`` seconds of fake time for ``seconds``."""
        end = self.clock.t + seconds
        while self.clock.t < end:
            self.clock.advance(every)
            ctl.tick(self.clock.t)

    def events(self) -> list[RolloutEvent]:
        return read_history(self.log, "driftloop.rollouts", "plant/pump-bearing-temp")

    def decisions(self) -> list[str]:
        return [e.decision for e in self.events()]

    def canary_rows(self, n: int, served_error: float, version: int = CANDIDATE) -> None:
        self.labelled.rows(n, endpoint="canary", version=version, served_error=served_error)

    def status(self, version: int = CANDIDATE) -> str | None:
        return self.registry.tags[version].get("driftloop.rollout.status")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        for ctl in w.controllers:
            ctl.close()


__all__ = ["CANDIDATE", "CHAMPION", "MODEL", "World"]
