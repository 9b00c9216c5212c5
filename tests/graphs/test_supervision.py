"""The supervisor's logic on a fake clock: backoff delays, reset after a healthy spell, restarts and
their metrics. (Real processes: tests/graphs/test_supervision_runtime.py.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from driftloop_graphs.supervision import RestartBackoff, ServerSupervisor, SupervisionMetrics
from prometheus_client import CollectorRegistry


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = RestartBackoff(initial_s=0.5, factor=2.0, max_s=4.0, reset_after_s=60.0)
    assert [backoff.next_delay(now=0.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_never_overflows_past_the_cap() -> None:
    backoff = RestartBackoff(initial_s=1.0, factor=10.0, max_s=30.0)
    for _ in range(5000):
        assert backoff.next_delay(now=0.0) <= 30.0


def test_backoff_resets_only_after_a_healthy_spell() -> None:
    backoff = RestartBackoff(initial_s=1.0, factor=2.0, max_s=30.0, reset_after_s=60.0)
    assert [backoff.next_delay(now=0.0) for _ in range(3)] == [1.0, 2.0, 4.0]
    backoff.healthy(now=10.0)
    assert backoff.next_delay(now=69.9) == 8.0  # up for 59.9 s: still crash-looping
    backoff.healthy(now=100.0)
    assert backoff.next_delay(now=160.0) == 1.0  # up for 60 s: a fresh start
    assert backoff.next_delay(now=161.0) == 2.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeServer:
    """Dies when told; its restarts fail ``failing`` times, then succeed."""

    name = "fake"
    log_path: Path | None = None

    def __init__(self, failing: int = 0) -> None:
        self.alive = True
        self.failing = failing
        self.restart_calls = 0
        self.pid = 100

    @property
    def running(self) -> bool:
        return self.alive

    @property
    def returncode(self) -> int | None:
        return None if self.alive else -9

    def restart(self) -> None:
        self.restart_calls += 1
        if self.failing:
            self.failing -= 1
            raise RuntimeError("address already in use")
        self.alive = True
        self.pid += 1


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, {"deployment": "d", "predictor": "p", **labels})
    return 0.0 if value is None else value


async def wait_for(condition: object, steps: int = 10_000) -> None:
    for _ in range(steps):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


@pytest.mark.parametrize("failing", [0, 3])
async def test_an_exited_server_is_restarted_with_backoff_and_counted(failing: int) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    server = FakeServer(failing=failing)
    changed: list[int] = []
    supervisor = ServerSupervisor(
        server,
        ("d", "p"),
        SupervisionMetrics(registry),
        RestartBackoff(initial_s=1.0, factor=2.0, max_s=30.0, reset_after_s=60.0),
        clock=clock,
        sleep=clock.sleep,
        on_restart=lambda: changed.append(server.pid),
        poll_s=0.25,
    )
    task = asyncio.create_task(supervisor.run())
    try:
        await wait_for(lambda: len(clock.sleeps) >= 3)
        assert supervisor.state == "up" and sample(registry, "driftloop_mlserver_up") == 1.0
        server.alive = False  # kill -9
        await wait_for(lambda: supervisor.state == "down")
        assert sample(registry, "driftloop_mlserver_up") == 0.0
        assert sample(registry, "driftloop_mlserver_exits_total") == 1.0
        await wait_for(lambda: supervisor.restarts == 1)
        backoff_sleeps = [s for s in clock.sleeps if s != 0.25]
        assert backoff_sleeps == [1.0, 2.0, 4.0, 8.0][: failing + 1]
        assert server.restart_calls == failing + 1
        assert supervisor.state == "up" and supervisor.last_exit_code == -9
        assert sample(registry, "driftloop_mlserver_up") == 1.0
        assert sample(registry, "driftloop_mlserver_restarts_total", outcome="ok") == 1.0
        assert sample(registry, "driftloop_mlserver_restarts_total", outcome="failed") == failing
        assert changed == [101]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_server_that_crashes_again_soon_waits_longer_and_one_that_stayed_up_does_not() -> None:
    clock = FakeClock()
    server = FakeServer()
    supervisor = ServerSupervisor(
        server,
        ("d", "p"),
        SupervisionMetrics(CollectorRegistry()),
        RestartBackoff(initial_s=1.0, factor=2.0, max_s=30.0, reset_after_s=60.0),
        clock=clock,
        sleep=clock.sleep,
        poll_s=0.25,
    )
    task = asyncio.create_task(supervisor.run())
    try:
        for expected_restarts in (1, 2):
            server.alive = False
            await wait_for(lambda n=expected_restarts: supervisor.restarts == n)  # type: ignore[misc]
        assert [s for s in clock.sleeps if s != 0.25] == [1.0, 2.0]  # crashed again within 60 s
        until = clock.now + 61.0
        await wait_for(lambda: clock.now >= until, steps=100_000)  # healthy for > 60 s
        server.alive = False
        await wait_for(lambda: supervisor.restarts == 3)
        assert [s for s in clock.sleeps if s != 0.25] == [1.0, 2.0, 1.0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
