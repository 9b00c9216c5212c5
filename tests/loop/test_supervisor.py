"""The supervisor on a fake clock with fake children: start order, restart with a doubling backoff that
a stable run resets, stop by PID (SIGTERM, then SIGKILL to the process group of what is left), metrics
URLs read from each worker's own log, and the worker list's rules."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from driftloop_feedback.loop.supervisor import Supervisor, SupervisorSettings
from driftloop_feedback.loop.workers import LoopOptions, WorkerSpec, loop_workers


@dataclass
class FakeChild:
    pid: int
    code: int | None = None
    ignores_term: bool = False

    def poll(self) -> int | None:
        return self.code


@dataclass
class Harness:
    now: float = 0.0
    next_pid: int = 100
    children: dict[str, list[FakeChild]] = field(default_factory=dict)
    signals: list[tuple[int, int, bool]] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s

    def spawn(self, spec: WorkerSpec, log_path: Path) -> FakeChild:
        self.next_pid += 1
        child = FakeChild(self.next_pid)
        self.children.setdefault(spec.name, []).append(child)
        return child

    def signal(self, pid: int, sig: int, group: bool) -> None:
        self.signals.append((pid, sig, group))
        for kids in self.children.values():
            for c in kids:
                if c.pid == pid and c.code is None and not (sig == signal.SIGTERM and c.ignores_term):
                    c.code = -sig


SPECS = [WorkerSpec("a", ("x",)), WorkerSpec("b", ("y",))]


def supervisor(h: Harness, tmp_path: Path, **settings: float) -> Supervisor:
    return Supervisor(
        SPECS,
        tmp_path,
        SupervisorSettings(**settings),
        spawn=h.spawn,
        signal_child=h.signal,
        clock=h.clock,
        sleep=h.sleep,
        say=lambda line: None,
    )


def test_a_crashed_worker_is_restarted_after_a_doubling_backoff(tmp_path: Path) -> None:
    h = Harness()
    sup = supervisor(h, tmp_path, backoff_initial_s=1, backoff_max_s=4, stable_after_s=30)
    sup.start()
    a = sup.workers[0]
    restart_times = []
    for _ in range(4):  # crashes at once, four times in a row
        h.children["a"][-1].code = 1
        sup.tick()
        assert a.status == "backoff" and a.pid is None
        crashed_at = h.now
        while a.status == "backoff":
            h.now += 0.25
            sup.tick()
        restart_times.append(h.now - crashed_at)
    assert restart_times == [1.0, 2.0, 4.0, 4.0]  # doubling, capped at backoff_max_s
    assert a.restarts == 4 and len(h.children["a"]) == 5 and a.last_exit == 1
    assert len(h.children["b"]) == 1  # the other worker is untouched
    h.now += 31  # a run longer than stable_after_s: the next crash starts the series again
    h.children["a"][-1].code = 2
    sup.tick()
    assert a.restart_at == h.now + 1.0


def test_stop_terms_every_child_by_pid_then_kills_what_is_left(tmp_path: Path) -> None:
    h = Harness()
    sup = supervisor(h, tmp_path, stop_timeout_s=5)
    sup.start()
    stubborn = h.children["b"][0]
    stubborn.ignores_term = True
    a_pid = h.children["a"][0].pid
    sup.stop()
    assert (stubborn.pid, signal.SIGTERM, False) in h.signals
    assert (a_pid, signal.SIGTERM, False) in h.signals
    assert (stubborn.pid, signal.SIGKILL, True) in h.signals  # after the timeout, its whole group
    assert h.now >= 5
    assert [w.status for w in sup.workers] == ["stopped", "stopped"]
    assert h.children["a"][0].code == -signal.SIGTERM and stubborn.code == -signal.SIGKILL
    sup.tick()  # stopped: nothing is restarted
    assert len(h.children["a"]) == 1 and len(h.children["b"]) == 1


def test_metrics_url_is_read_from_the_current_start_of_the_log(tmp_path: Path) -> None:
    h = Harness()
    sup = supervisor(h, tmp_path)
    sup.start()
    a = sup.workers[0]
    with a.log_path.open("a") as log:
        log.write("worker metrics on http://127.0.0.1:4321/metrics\n")
    sup.tick()
    assert a.metrics_url == "http://127.0.0.1:4321/metrics"
    h.children["a"][0].code = 1
    sup.tick()
    h.now += 2
    sup.tick()  # restarted: the old port is not the new process's
    assert a.pid is not None and a.metrics_url is None
    with a.log_path.open("a") as log:
        log.write("worker metrics on http://127.0.0.1:5555/metrics\n")
    sup.tick()
    assert a.metrics_url == "http://127.0.0.1:5555/metrics"


def test_loop_workers_order_ports_and_without() -> None:
    names = [w.name for w in loop_workers(LoopOptions(manifest=Path("m.yaml"), runtime_port=0))]
    assert names == ["runtime", "feedback-api", "joiner", "monitor", "trainer", "validator"]
    fixed = loop_workers(LoopOptions(metrics_base_port=9100, without=frozenset({"monitor"})))
    assert [(w.name, w.args[-1]) for w in fixed[1:]] == [
        ("joiner", "9101"),
        ("trainer", "9103"),
        ("validator", "9104"),
    ]
    api = loop_workers(LoopOptions(feedback_port=0))[0]
    assert api.args == ("feedback", "serve", "--port", "0")
    assert (
        api.metrics_url("feedback API on http://127.0.0.1:811 -> topic t") == "http://127.0.0.1:811/metrics"
    )
    with pytest.raises(ValueError, match="no such worker"):
        loop_workers(LoopOptions(without=frozenset({"trainr"})))
