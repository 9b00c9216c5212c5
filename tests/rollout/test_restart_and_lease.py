"""Restart safety and the one-controller-per-deployment lease, on fakes with a fake clock."""

from __future__ import annotations

import pytest
from driftloop_feedback.rollout import LeaseHeldError, LeaseLostError

from tests.rollout.conftest import CANDIDATE, CHAMPION, MODEL, World

GOOD = 0.0


def _to_25(world: World) -> None:
    ctl = world.controller(holder="ctl-a")
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.run(ctl, 60)
    assert world.backend.traffic["canary"] == 25
    ctl.close()  # killed here: its connections go, no stop(): traffic stays split, the lease expires


def test_a_controller_killed_mid_rollout_is_resumed_from_the_deployments_actual_weight(world: World) -> None:
    _to_25(world)
    world.clock.advance(31)  # past the dead holder's lease
    ctl = world.controller(holder="ctl-b")
    ctl.tick(world.clock.t)
    assert world.decisions()[-1] == "resumed"
    assert ctl.rollout is not None and (ctl.rollout.weight, ctl.rollout.step) == (25, 1)
    assert world.backend.traffic["canary"] == 25  # left as it was, now owned again
    for _ in range(2):
        world.canary_rows(120, GOOD)
        world.run(ctl, 60)
    assert world.registry.aliases["champion"] == CANDIDATE and world.status() == "promoted"
    assert world.backend.traffic == {"main": 100, "canary": 0}


def test_a_restart_finding_the_canary_changed_meanwhile_aborts_cleanly(world: World) -> None:
    _to_25(world)
    world.backend.models["canary"]["bearing-temp"] = f"models:/{MODEL}/9"  # someone swapped it by hand
    world.clock.advance(31)
    ctl = world.controller(holder="ctl-b")
    ctl.tick(world.clock.t)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.decisions()[-1] == "aborted" and ctl.rollout is None
    assert world.status() == "aborted" and "models:/pump-bearing-temp/9" in world.events()[-1].reason
    assert world.registry.aliases["champion"] == CHAMPION
    world.run(ctl, 60)  # an aborted candidate is not picked up again by itself
    assert world.backend.traffic == {"main": 100, "canary": 0}


def test_a_restart_finishes_a_promotion_cut_short(world: World) -> None:
    ctl = world.controller(holder="ctl-a", step_weights=[10])
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.backend.fail_next = "set_model"  # killed right after "promoting" was recorded
    world.run(ctl, 60)
    assert world.decisions()[-1] == "promoting" and world.registry.aliases["champion"] == CHAMPION
    ctl.close()
    world.clock.advance(31)
    ctl2 = world.controller(holder="ctl-b", step_weights=[10])
    ctl2.tick(world.clock.t)
    assert world.decisions()[-3:] == ["promoting", "resumed", "promoted"]
    assert world.registry.aliases["champion"] == CANDIDATE
    assert world.backend.models["main"]["bearing-temp"] == f"models:/{MODEL}/{CANDIDATE}"
    assert world.backend.traffic == {"main": 100, "canary": 0}


def test_traffic_split_without_an_owner_is_set_back_to_main_at_start(world: World) -> None:
    world.backend.traffic = {"main": 90, "canary": 10}  # the manifest's split, no rollout recorded
    world.registry.tags[CANDIDATE]["driftloop.validation.verdict"] = "fail"
    ctl = world.controller()
    ctl.tick(world.clock.t)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.decisions() == ["aborted"] and "without an owner" in world.events()[0].reason


def test_a_graceful_stop_sets_the_canary_to_zero_and_the_candidate_is_retried_from_the_start(
    world: World,
) -> None:
    first = world.controller(holder="ctl-a")
    first.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.run(first, 60)
    assert world.backend.traffic["canary"] == 25
    first.stop()
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.status() == "interrupted"
    ctl = world.controller(holder="ctl-b")  # the lease was released: no wait
    ctl.tick(world.clock.t)
    assert world.decisions()[-2:] == ["started", "step"] and world.backend.traffic["canary"] == 10


def test_the_lease_refuses_a_second_controller_while_the_first_is_alive(world: World) -> None:
    first = world.controller(holder="ctl-a")
    first.tick(world.clock.t)
    second = world.controller(holder="ctl-b")
    with pytest.raises(LeaseHeldError, match="held by ctl-a"):
        second.tick(world.clock.t)
    calls = len(world.backend.calls)
    world.run(first, 60)  # the first keeps renewing: the second is still refused later on
    with pytest.raises(LeaseHeldError):
        second.start(world.clock.t)
    assert len(world.backend.calls) == calls  # the refused controller touched nothing
    # the first dies; after its lease expires the second takes over, and the first (if it wakes) stops
    world.clock.advance(31)
    second.start(world.clock.t)
    with pytest.raises(LeaseLostError, match="taken over by ctl-b"):
        first.tick(world.clock.t)
