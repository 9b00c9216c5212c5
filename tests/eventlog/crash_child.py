"""A separate process for the crash tests: it opens the log the environment points at (like every
driftloop service does) and reports progress on stdout, one line per acknowledged step.

    python -m tests.eventlog.crash_child produce <topic> <count> <label> <wait|exit>
    python -m tests.eventlog.crash_child consume <group> <topic> <count> <commit|nocommit>
    python -m tests.eventlog.crash_child member <group> <topic>
"""

from __future__ import annotations

import sys
import time

from driftloop.eventlog import open_event_log


def produce(topic: str, count: int, label: str, then: str) -> None:
    log = open_event_log()
    producer = log.producer()
    for seq in range(count):
        meta = producer.send(topic, f"{label}:{seq}".encode(), key=f"{label}-{seq % 7}".encode()).get(30)
        print(f"acked {label}:{seq} {meta.partition} {meta.offset}", flush=True)
    print("done", flush=True)
    if then == "wait":
        time.sleep(3600)
    producer.close()
    log.close()


def consume(group: str, topic: str, count: int, mode: str) -> None:
    log = open_event_log()
    consumer = log.consumer(group, [topic])
    got = 0
    deadline = time.monotonic() + 60
    while got < count and time.monotonic() < deadline:
        for record in consumer.poll(timeout_s=0.5, max_records=count - got):
            print(f"got {record.value.decode()}", flush=True)
            got += 1
    if mode == "commit":
        consumer.commit()
        print("committed", flush=True)
    print("done", flush=True)
    time.sleep(3600)  # killed here by the test, without closing the consumer


def member(group: str, topic: str) -> None:
    """A long-running group member: reports its assignment and every record, commits each batch."""
    log = open_event_log()
    consumer = log.consumer(group, [topic])
    seen: list[int] = []
    while True:
        records = consumer.poll(timeout_s=0.2)
        assigned = sorted(tp.partition for tp in consumer.assignment())
        if assigned != seen:
            seen = assigned
            print("assigned " + ",".join(map(str, assigned)), flush=True)
        for record in records:
            print(f"got {record.partition} {record.value.decode()}", flush=True)
        if records:
            consumer.commit()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "produce":
        produce(args[0], int(args[1]), args[2], args[3])
    elif command == "consume":
        consume(args[0], args[1], int(args[2]), args[3])
    elif command == "member":
        member(args[0], args[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
