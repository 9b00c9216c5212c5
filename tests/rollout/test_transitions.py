"""Every transition of the controller, on fakes with a fake clock (no sleeps)."""

from __future__ import annotations

from driftloop_feedback.labelled_batch import encode_examples
from driftloop_feedback.records import LabelledExample

from tests.rollout.conftest import CANDIDATE, CHAMPION, MODEL, World

GOOD, BAD = 0.0, 3.0  # the canary's served error; the champion is off by 1


def test_a_validated_challenger_goes_to_the_canary_at_zero_then_steps_up_and_is_promoted(
    world: World,
) -> None:
    ctl = world.controller()
    ctl.tick(world.clock.t)
    # the candidate was swapped onto the canary while it had no traffic, then the first step
    first_model_call = next(c for c in world.backend.calls if c[0] == "model")
    assert first_model_call[1] == ("canary", f"models:/{MODEL}/{CANDIDATE}", 0)
    assert world.backend.traffic == {"main": 90, "canary": 10}
    assert world.decisions() == ["started", "step"]
    for weight in (25, 50):
        world.canary_rows(120, GOOD)
        world.run(ctl, 60)
        assert world.backend.traffic["canary"] == weight
    assert world.registry.aliases["champion"] == CHAMPION  # not before a pass at maxWeight
    world.canary_rows(120, GOOD)
    world.run(ctl, 60)
    assert world.registry.aliases["champion"] == CANDIDATE
    assert world.backend.models["main"]["bearing-temp"] == f"models:/{MODEL}/{CANDIDATE}"
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.status() == "promoted"
    assert world.decisions()[-2:] == ["promoting", "promoted"]
    steps = [e for e in world.events() if e.decision == "step" and e.gate is not None]
    assert all(e.gate is not None and e.gate["verdict"] == "pass" and e.gate["n"] >= 20 for e in steps)
    assert "PairedLossTest" in steps[0].gate["test"]  # type: ignore[index]
    assert ctl.metrics.rollouts.labels("promoted")._value.get() == 1
    assert ctl.rollout is None


def test_main_is_swapped_before_the_canary_leaves_so_no_request_meets_a_missing_model(world: World) -> None:
    ctl = world.controller(step_weights=[50])
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.run(ctl, 60)
    tail = world.backend.calls[-2:]
    assert tail[0] == ("model", ("main", f"models:/{MODEL}/{CANDIDATE}", 50))
    assert tail[1] == ("traffic", {"main": 100, "canary": 0})


def test_a_bad_candidate_is_rolled_back_and_never_exceeds_the_first_step(world: World) -> None:
    ctl = world.controller()
    ctl.tick(world.clock.t)
    for _ in range(4):
        world.canary_rows(120, BAD)
        world.run(ctl, 60)
    assert max(world.backend.canary_weights_seen()) == 10
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.registry.aliases["champion"] == CHAMPION
    assert world.backend.models["main"]["bearing-temp"] == f"models:/{MODEL}@champion"  # untouched
    assert world.status() == "rejected"
    reason = world.registry.tags[CANDIDATE]["driftloop.rollout.reason"]
    assert "2 failed checks" in reason and "ground truth" in reason
    checks = [e for e in world.events() if e.decision in ("check", "rolling_back")]
    assert [e.result for e in checks] == ["failed", "failed"]
    assert checks[0].gate is not None and checks[0].gate["verdict"] == "fail"
    assert world.decisions()[-1] == "rolled_back"
    # a rejected candidate is not rolled out again
    world.run(ctl, 120)
    assert world.decisions()[-1] == "rolled_back"


def test_sparse_ground_truth_waits_without_failed_checks_then_fails_at_the_deadline(world: World) -> None:
    ctl = world.controller(progress_deadline_s=300.0)
    ctl.tick(world.clock.t)
    world.canary_rows(5, GOOD)  # fewer than min_examples=20: never decidable
    world.run(ctl, 240)
    assert world.backend.traffic["canary"] == 10  # waited at the first weight
    waits = [e for e in world.events() if e.decision == "check"]
    assert waits and all(e.result == "inconclusive" and e.failed_checks == 0 for e in waits)
    world.run(ctl, 120)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.registry.aliases["champion"] == CHAMPION
    assert world.status() == "rejected"
    reason = world.registry.tags[CANDIDATE]["driftloop.rollout.reason"]
    assert reason.startswith("progress deadline: 5 paired labelled examples") and "too little" in reason
    assert max(world.backend.canary_weights_seen()) == 10


def test_only_the_canarys_own_rows_of_the_candidate_count(world: World) -> None:
    ctl = world.controller()
    ctl.tick(world.clock.t)
    world.labelled.rows(100, endpoint="main", version=CHAMPION, served_error=GOOD)
    world.labelled.rows(100, endpoint="canary", version=CHAMPION, served_error=GOOD)  # before the swap
    world.run(ctl, 60)
    assert world.backend.traffic["canary"] == 10
    assert ctl.rollout is not None and ctl.rollout.evidence is not None and ctl.rollout.evidence.test.n == 0
    skipped = ctl.metrics.rows_skipped
    assert skipped.labels("other_endpoint")._value.get() == 100
    assert skipped.labels("other_version")._value.get() == 100


def test_an_undecodable_or_repeated_labelled_record_is_counted_not_fatal(world: World) -> None:
    ctl = world.controller()
    ctl.tick(world.clock.t)
    e = LabelledExample("x:0", "x", 0, (1.0, 1.0), 1.0, 1.0, "canary", str(CANDIDATE), 0.0, 1.0, "request")
    world.labelled.producer.send("driftloop.labelled", b"not json")
    world.labelled.producer.send("driftloop.labelled", e.encode())
    world.labelled.producer.send("driftloop.labelled", e.encode())
    world.run(ctl, 10)
    assert ctl.metrics.rows_skipped.labels("undecodable")._value.get() == 1
    assert ctl.metrics.rows_skipped.labels("duplicate")._value.get() == 1
    assert ctl.metrics.rows_used._value.get() == 1


def test_an_operations_breach_is_a_failed_check_even_with_good_ground_truth(world: World) -> None:
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.ops.add("main", 500, errors=0)
    world.ops.add("canary", 50, errors=10)  # 20 % 5xx
    world.run(ctl, 60)
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.status() == "rejected"
    last = world.events()[-2]
    assert last.decision == "rolling_back" and last.ops is not None
    assert last.ops["canary_error_rate"] == 0.2 and last.ops["main_error_rate"] == 0.0
    assert "operations: canary error rate 0.200" in last.reason


def test_a_slow_canary_breaches_the_p99_limit(world: World) -> None:
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.ops.add("main", 500, latency_s=0.002)
    world.ops.add("canary", 50, latency_s=0.1)
    world.run(ctl, 60)
    assert world.status() == "rejected"
    assert (
        "p99 latency 0.1 s is above main's 0.002 s"
        in world.registry.tags[CANDIDATE]["driftloop.rollout.reason"]
    )


def test_too_little_canary_traffic_is_no_ops_verdict_not_a_failure(world: World) -> None:
    ctl = world.controller(threshold=1)
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.ops.add("main", 500)
    world.ops.add("canary", 5, errors=5)  # 100 % errors, but 5 requests < min_requests
    world.run(ctl, 60)
    assert world.backend.traffic["canary"] == 25
    step = world.events()[-1]
    assert step.ops is not None and step.ops["enough_data"] is False and step.ops["breach"] is None


def test_a_challenger_without_a_pass_verdict_is_not_rolled_out(world: World) -> None:
    world.registry.tags[CANDIDATE]["driftloop.validation.verdict"] = "inconclusive"
    ctl = world.controller()
    world.run(ctl, 60)
    assert world.backend.calls == [] and world.decisions() == []
    assert "not 'pass'" in ctl.status


def test_a_registry_outage_during_promotion_is_retried_until_the_promotion_is_complete(world: World) -> None:
    ctl = world.controller(step_weights=[10])
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.registry.failing = True
    world.run(ctl, 60)
    assert ctl.rollout is not None and ctl.rollout.phase == "promoting"
    assert world.registry.aliases["champion"] == CHAMPION and world.status() == "progressing"
    assert ctl.metrics.failures.labels("registry")._value.get() >= 1
    world.registry.failing = False
    world.run(ctl, 10)
    assert world.registry.aliases["champion"] == CANDIDATE and world.status() == "promoted"
    assert world.backend.traffic == {"main": 100, "canary": 0}
    assert world.decisions().count("promoting") == 1 and world.decisions()[-1] == "promoted"


def test_the_first_step_gets_its_full_interval_and_deadline_after_a_slow_model_swap(world: World) -> None:
    # loading the candidate on the canary takes 550 s of the 600 s deadline (MLServer loading under load)
    world.backend.on_set_model = lambda predictor, uri: world.clock.advance(550.0)
    ctl = world.controller(progress_deadline_s=600.0, interval_s=60.0)
    ctl.tick(world.clock.t)
    swapped = world.clock.t  # the step begins when the candidate serves, not when it was found
    assert world.decisions() == ["started", "step"] and world.backend.traffic["canary"] == 10
    world.canary_rows(5, GOOD)  # never decidable (min_examples=20): the deadline decides
    world.run(ctl, 50)  # 50 s after the swap: the first check is not due yet
    assert world.decisions() == ["started", "step"]
    world.run(ctl, 10)  # the full interval (60 s) after the swap: the first check
    assert world.decisions() == ["started", "step", "check"]
    world.run(ctl, swapped + 590.0 - world.clock.t)  # 590 s of the step: still waiting at 10 %
    assert world.backend.traffic["canary"] == 10 and world.status() == "progressing"
    assert "rolling_back" not in world.decisions()
    world.run(ctl, swapped + 600.0 - world.clock.t)  # the full deadline: rolled back
    assert world.status() == "rejected"
    reason = world.registry.tags[CANDIDATE]["driftloop.rollout.reason"]
    assert reason.startswith("progress deadline: 5 paired labelled examples in 600 s at 10%")


def test_a_step_resumed_after_a_slow_champion_load_gets_its_full_interval_and_deadline(world: World) -> None:
    ctl = world.controller(holder="ctl-a", progress_deadline_s=600.0)
    ctl.tick(world.clock.t)
    world.canary_rows(120, GOOD)
    world.run(ctl, 60)
    assert world.backend.traffic["canary"] == 25
    ctl.close()  # killed at 25 %
    world.clock.advance(31)  # past the dead holder's lease
    world.registry.on_load = lambda uri: world.clock.advance(550.0)  # loading the champion takes 550 s
    ctl2 = world.controller(holder="ctl-b", progress_deadline_s=600.0)
    ctl2.tick(world.clock.t)
    resumed = world.clock.t
    assert world.decisions()[-1] == "resumed" and world.backend.traffic["canary"] == 25
    world.run(ctl2, 50)
    assert world.decisions()[-1] == "resumed"  # no check before the step's full interval
    world.run(ctl2, resumed + 590.0 - world.clock.t)
    assert world.backend.traffic["canary"] == 25 and "rolling_back" not in world.decisions()
    world.run(ctl2, resumed + 600.0 - world.clock.t)
    reason = world.registry.tags[CANDIDATE]["driftloop.rollout.reason"]
    assert world.status() == "rejected" and reason.startswith(
        "progress deadline: 0 paired labelled examples in 600 s"
    )


def test_every_example_of_a_batch_record_is_a_row_read_used_or_counted(world: World) -> None:
    """The joiner writes batch records: each example in one is a row (read, used or skipped)."""
    ctl = world.controller()
    ctl.tick(world.clock.t)
    rows = [
        LabelledExample(
            f"b{i}:0", f"b{i}", 0, (1.0, 1.0), 1.0, 1.0, "canary", str(CANDIDATE), 0.0, 1.0, "request"
        )
        for i in range(5)
    ]
    for value in encode_examples(rows) + encode_examples(rows[:2]):  # 2 resent in a second record
        world.labelled.producer.send("driftloop.labelled", value)
    world.run(ctl, 10)
    assert ctl.metrics.rows_read._value.get() == 7
    assert ctl.metrics.rows_skipped.labels("duplicate")._value.get() == 2
    assert ctl.metrics.rows_used._value.get() == 5
