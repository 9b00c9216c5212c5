"""The joiner process: the re-keying stage, the request join and the asset join. ``run`` gives each
stage its own thread; ``step`` steps them in turn in the caller's thread (tests, benchmarks). Each stage
is its own consumer group, so any of them scales out with more processes.

>>> from driftloop.eventlog import MemoryEventLog
>>> joiner = Joiner(MemoryEventLog(), JoinerSettings(partitions=2))
>>> sorted(s.name for s in joiner.stages)
['asset', 'rekey', 'request']
>>> joiner.close()
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable

from driftloop_feedback.errors import TopologyError
from driftloop_feedback.join.rekey import RekeyStage
from driftloop_feedback.join.rules import JoinCounters
from driftloop_feedback.join.settings import JoinerSettings
from driftloop_feedback.join.worker import JoinStage
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from driftloop.eventlog import EventLog

Clock = Callable[[], float]


class Joiner:
    def __init__(self, log: EventLog, settings: JoinerSettings, *, clock: Clock = time.time) -> None:
        self.settings = settings
        s = settings
        for topic in (
            s.request_log_topic,
            s.keyed_log_topic,
            s.feedback_topic,
            s.telemetry_topic,
            s.predictions_topic,
            s.labelled_topic,
        ):
            log.create_topic(topic, s.partitions)
        _check_copartitioned(log, [s.keyed_log_topic, s.feedback_topic])
        _check_copartitioned(log, [s.predictions_topic, s.telemetry_topic, s.feedback_topic])
        self.rekey = RekeyStage(log, s)
        self.request = JoinStage("request", log, s, clock=clock)
        self.asset = JoinStage("asset", log, s, clock=clock)
        # In request mode the asset stage is idle (``JoinStage.active``): no thread, no consumer.
        self.stages: list[RekeyStage | JoinStage] = [
            stage for stage in (self.rekey, self.request, self.asset) if stage.active
        ]

    def step(self, poll_timeout_s: float = 0.05) -> int:
        """One round over the stages: non-blocking polls first; only when nothing arrived anywhere
        does it wait (``poll_timeout_s`` split across the stages)."""
        done = sum(stage.step(0.0) for stage in self.stages)
        if done == 0:
            done = sum(stage.step(poll_timeout_s / len(self.stages)) for stage in self.stages)
        return done

    def run(self, should_stop: Callable[[], bool], poll_timeout_s: float = 0.2) -> None:
        """Run every stage in its own thread until ``should_stop()``; each checkpoints on the way out.

        One thread per stage, each polling with a real timeout: kafka-python gives up a group join that
        outlasts a short poll and joins again, so group members polled in turn from one thread with
        near-zero timeouts keep their groups rebalancing (seen here: a rejoin every ~0.6 s, labelled
        examples stalled for minutes). A stage that fails stops the others, and its error is raised here.
        """
        settle_heap()
        failed: list[BaseException] = []

        def stopping() -> bool:
            return bool(failed) or should_stop()

        def loop(stage: RekeyStage | JoinStage) -> None:
            try:
                while not stopping():
                    stage.step(poll_timeout_s)
                stage.checkpoint()
            except BaseException as exc:  # surfaced to the caller below
                failed.append(exc)

        threads = [
            threading.Thread(target=loop, args=(stage,), name=f"joiner-{stage.name}", daemon=True)
            for stage in self.stages
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]

    def checkpoint(self) -> None:
        for stage in self.stages:
            stage.checkpoint()

    def counters(self) -> JoinCounters:
        total = JoinCounters()
        for stage in (self.request, self.asset):
            total.add(stage.stats.counters)
        return total

    def sampled_out(self) -> int:
        return self.request.breaker.sampled_out + self.asset.breaker.sampled_out

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry()
        registry.register(_JoinerCollector(self))
        return registry


YOUNG_GC_THRESHOLD = 20_000  # container allocations between young-generation collections (CPython: 700)


def settle_heap() -> None:
    """Set the joiner process's garbage collector for its workload. (1) Move everything allocated so
    far (modules, settings, clients: never garbage) out of the cyclic collector's reach (``gc.freeze``):
    the join allocates objects by the hundred thousand per second, which sets off full collections
    every second or so, and without this each one walks the whole start-up heap again (30-60 ms each
    here, ~10% of the joiner's CPU). (2) Collect the young generation every ``YOUNG_GC_THRESHOLD``
    allocations rather than every 700: nearly all of the joiner's objects (decoded records, rows,
    encoded examples) die young and free themselves by reference counting, and the collections found
    nothing to free while taking 0.09-0.17 s of a 2 s run (~600 of them per 100k examples; 3-6 now,
    0.02-0.035 s). ``run`` calls it once at the start; a process that drives ``step`` itself may call
    it after setting up."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GC_THRESHOLD, older, oldest)


def _check_copartitioned(log: EventLog, topics: list[str]) -> None:
    counts = {topic: log.partitions_for(topic) for topic in topics}
    if len(set(counts.values())) > 1:
        raise TopologyError(
            f"the joiner needs these topics co-partitioned (same partition count): {counts}; recreate "
            "them with one count (DRIFTLOOP_JOINER_PARTITIONS) so a key lands on the same partition index"
        )


class _JoinerCollector(Collector):
    def __init__(self, joiner: Joiner) -> None:
        self.joiner = joiner

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily("driftloop_joiner_events", "join outcomes", labels=["stage", "outcome"])
        lag = GaugeMetricFamily(
            "driftloop_joiner_consumer_lag",
            "records behind, per partition",
            labels=["stage", "topic", "partition"],
        )
        pending = GaugeMetricFamily(
            "driftloop_joiner_pending_predictions", "waiting for truth", labels=["stage"]
        )
        paused = GaugeMetricFamily("driftloop_joiner_paused", "1 while inputs are paused", labels=["stage"])
        sampled = CounterMetricFamily(
            "driftloop_joiner_sampled_out", "predictions dropped by the breaker", labels=["stage"]
        )
        tripped = GaugeMetricFamily("driftloop_joiner_breaker_tripped", "1 while sampling", labels=["stage"])
        discarded = CounterMetricFamily(
            "driftloop_joiner_discarded_snapshots",
            "snapshots of another log moved aside (reset_state); their pending predictions are dropped",
            labels=["stage"],
        )
        for stage in (self.joiner.request, self.joiner.asset):
            for outcome, value in stage.stats.counters.as_dict().items():
                events.add_metric([stage.name, outcome], value)
            for tp, value in sorted(stage.stats.lag.items()):
                lag.add_metric([stage.name, tp.topic, str(tp.partition)], value)
            pending.add_metric([stage.name], stage.stats.pending)
            paused.add_metric([stage.name], float(stage.stats.paused))
            sampled.add_metric([stage.name], stage.breaker.sampled_out)
            tripped.add_metric([stage.name], float(stage.breaker.tripped))
            discarded.add_metric([stage.name], stage.stats.discarded_snapshots)
        for tp, value in sorted(self.joiner.rekey.lag.items()):
            lag.add_metric(["rekey", tp.topic, str(tp.partition)], value)
        rekey = CounterMetricFamily("driftloop_joiner_rekeyed", "request-log events re-keyed")
        rekey.add_metric([], self.joiner.rekey.copied)
        yield from (events, lag, pending, paused, sampled, tripped, discarded, rekey)
