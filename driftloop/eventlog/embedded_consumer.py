"""A consumer-group member of the embedded log, coordinated through the shared SQLite file.

Membership: joining or leaving bumps the group's generation; every call that touches the group
heartbeats (at most every ``session_timeout_s / 3``) and expires members whose last heartbeat is older
than ``session_timeout_s`` (a crashed process, or one that stopped polling: like Kafka's
``max.poll.interval.ms``). Assignment: when the generation or the topics change, each member computes
the same range assignment from the sorted member list and learns its partitions on the next call.
Commits are fenced: an offset is stored only for a partition this member owns in the current
generation; for the others :class:`CommitFailedError` is raised and the new owner re-reads them.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from driftloop.eventlog.assignment import range_assign
from driftloop.eventlog.base import EventLogError, Record, TopicPartition
from driftloop.eventlog.delivery import CommitFailedError
from driftloop.eventlog.sqlite_store import decode_headers

if TYPE_CHECKING:
    import sqlite3

    from driftloop.eventlog.embedded import EmbeddedEventLog


class EmbeddedConsumer:
    def __init__(self, log: EmbeddedEventLog, group_id: str, topics: tuple[str, ...], reset: str) -> None:
        self._log = log
        self._store = log.open_store()
        self.group_id = group_id
        self.member_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._topics = topics
        self._reset = reset
        self._session_ms = int(log.settings.session_timeout_s * 1000)
        self._seen: tuple[int, int] = (-1, -1)
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._last_heartbeat_ms = 0
        self._closed = False
        with self._store.write() as conn:
            self._join(conn)

    # -- group membership -----------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._log.clock() * 1000)

    def _join(self, conn: sqlite3.Connection) -> None:
        now = self._now_ms()
        conn.execute(
            "INSERT OR REPLACE INTO members(group_id, member_id, topics, heartbeat_ms) VALUES (?, ?, ?, ?)",
            (self.group_id, self.member_id, json.dumps(self._topics), now),
        )
        self._bump(conn)
        self._last_heartbeat_ms = now

    def _bump(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO groups(group_id, generation) VALUES (?, 1) "
            "ON CONFLICT(group_id) DO UPDATE SET generation = generation + 1",
            (self.group_id,),
        )

    def _heartbeat(self) -> None:
        now = self._now_ms()
        if now - self._last_heartbeat_ms < self._session_ms // 3 and not self._anyone_expired(now):
            return
        with self._store.write() as conn:
            alive = conn.execute(
                "UPDATE members SET heartbeat_ms = ? WHERE group_id = ? AND member_id = ?",
                (now, self.group_id, self.member_id),
            ).rowcount
            if not alive:  # we were declared dead (no poll for a session): rejoin from committed offsets
                self._positions.clear()
                self._assigned.clear()
                self._join(conn)
            expired = conn.execute(
                "DELETE FROM members WHERE group_id = ? AND heartbeat_ms < ?",
                (self.group_id, now - self._session_ms),
            ).rowcount
            if expired:
                self._bump(conn)
        self._last_heartbeat_ms = now

    def _anyone_expired(self, now: int) -> bool:
        with self._store.lock:
            row = self._store.conn.execute(
                "SELECT 1 FROM members WHERE group_id = ? AND heartbeat_ms < ? LIMIT 1",
                (self.group_id, now - self._session_ms),
            ).fetchone()
        return row is not None

    def _state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        (generation,) = conn.execute(
            "SELECT generation FROM groups WHERE group_id = ?", (self.group_id,)
        ).fetchone() or (0,)
        (topology,) = conn.execute("SELECT value FROM meta WHERE key = 'topology'").fetchone()
        return int(generation), int(topology)

    def _sync(self) -> None:
        """Heartbeat, and learn the current assignment if the group or its topics changed."""
        if self._closed:
            raise EventLogError(f"consumer of group {self.group_id!r} is closed")
        self._heartbeat()
        with self._store.read() as conn:
            state = self._state(conn)
            if state == self._seen:
                return
            members = {
                m: tuple(json.loads(t))
                for m, t in conn.execute(
                    "SELECT member_id, topics FROM members WHERE group_id = ?", (self.group_id,)
                )
            }
            members.setdefault(self.member_id, self._topics)
            marks = ",".join("?" * len(self._topics))
            counts = dict(
                conn.execute(f"SELECT name, partitions FROM topics WHERE name IN ({marks})", self._topics)
            )
            mine = range_assign(members, counts)[self.member_id]
            for tp in mine - self._assigned:
                self._positions[tp] = self._start_offset(conn, tp)
        for tp in self._assigned - mine:
            self._positions.pop(tp, None)
        self._assigned = mine
        self._paused &= mine
        self._seen = state

    def _start_offset(self, conn: sqlite3.Connection, tp: TopicPartition) -> int:
        row = conn.execute(
            "SELECT offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
            (self.group_id, tp.topic, tp.partition),
        ).fetchone()
        if row is not None:
            return int(row[0])
        log_start, end = conn.execute(
            "SELECT log_start, next_offset FROM partitions WHERE topic = ? AND partition = ?",
            (tp.topic, tp.partition),
        ).fetchone()
        return int(log_start) if self._reset == "earliest" else int(end)

    # -- Consumer ------------------------------------------------------------------------------
    def poll(self, timeout_s: float = 1.0, max_records: int = 500) -> list[Record]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        backoff = self._log.settings.poll_interval_s
        while True:
            self._sync()
            out = self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                self._log.metrics.polled(self._log.backend, self.group_id, out)
                return out
            time.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, 0.1)

    def _fetch(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        with self._store.read() as conn:
            for tp in sorted(self._assigned - self._paused):
                rows = conn.execute(
                    "SELECT offset, timestamp_ms, key, value, headers FROM records "
                    "WHERE topic = ? AND partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                    (tp.topic, tp.partition, self._positions[tp], max_records - len(out)),
                ).fetchall()
                for offset, stamp, key, value, headers in rows:
                    out.append(
                        Record(tp.topic, tp.partition, offset, stamp, key, value, decode_headers(headers))
                    )
                if rows:
                    self._positions[tp] = int(rows[-1][0]) + 1
                if len(out) >= max_records:
                    break
        return out

    def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        # positions before the sync: what this consumer has returned, even from revoked partitions
        wanted = dict(self._positions) if offsets is None else dict(offsets)
        self._sync()
        while True:
            with self._store.write() as conn:
                if self._state(conn) == self._seen:
                    owned = {tp: o for tp, o in wanted.items() if tp in self._assigned}
                    conn.executemany(
                        "INSERT OR REPLACE INTO offsets(group_id, topic, partition, offset) "
                        "VALUES (?, ?, ?, ?)",
                        [(self.group_id, tp.topic, tp.partition, int(o)) for tp, o in owned.items()],
                    )
                    break
            self._seen = (-1, -1)  # the group moved on between our sync and the write: sync again
            self._sync()
        revoked = sorted(tp for tp in wanted if tp not in owned)
        self._log.metrics.commit(self._log.backend, self.group_id, "rebalanced" if revoked else "ok")
        if revoked:
            raise CommitFailedError(
                f"group {self.group_id!r} rebalanced: {revoked} are no longer assigned to this consumer, "
                "so their offsets were not committed; the new owner re-reads them (at-least-once). "
                "Poll again and carry on."
            )

    def committed(self, tp: TopicPartition) -> int | None:
        with self._store.read() as conn:
            row = conn.execute(
                "SELECT offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                (self.group_id, tp.topic, tp.partition),
            ).fetchone()
        return None if row is None else int(row[0])

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._require_assigned(tp)
        if offset < 0:
            raise EventLogError(f"cannot seek {tp} to negative offset {offset}")
        self._positions[tp] = offset

    def seek_to_time(self, timestamp_ms: int) -> None:
        self._sync()
        with self._store.read() as conn:
            for tp in self._assigned:
                (first,) = conn.execute(
                    "SELECT MIN(offset) FROM records WHERE topic = ? AND partition = ? AND timestamp_ms >= ?",
                    (tp.topic, tp.partition, timestamp_ms),
                ).fetchone()
                if first is None:
                    (first,) = conn.execute(
                        "SELECT next_offset FROM partitions WHERE topic = ? AND partition = ?",
                        (tp.topic, tp.partition),
                    ).fetchone()
                self._positions[tp] = int(first)

    def position(self, tp: TopicPartition) -> int:
        self._require_assigned(tp)
        return self._positions[tp]

    def assignment(self) -> set[TopicPartition]:
        self._sync()
        return set(self._assigned)

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._require_assigned(tp)
            self._paused.add(tp)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._paused.difference_update(tps)

    def lag(self) -> dict[TopicPartition, int]:
        """End offset minus the committed offset (or minus the first stored offset when none is committed)."""
        self._sync()
        out: dict[TopicPartition, int] = {}
        with self._store.read() as conn:
            for tp in self._assigned:
                end, start = conn.execute(
                    "SELECT next_offset, log_start FROM partitions WHERE topic = ? AND partition = ?",
                    (tp.topic, tp.partition),
                ).fetchone()
                row = conn.execute(
                    "SELECT offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
                    (self.group_id, tp.topic, tp.partition),
                ).fetchone()
                out[tp] = int(end) - (int(row[0]) if row is not None else int(start))
        return out

    def close(self) -> None:
        """Leave the group (its partitions move to the other members at once) and release the file."""
        if self._closed:
            return
        self._closed = True
        with self._store.write() as conn:
            conn.execute(
                "DELETE FROM members WHERE group_id = ? AND member_id = ?", (self.group_id, self.member_id)
            )
            self._bump(conn)
        self._store.close()

    def _require_assigned(self, tp: TopicPartition) -> None:
        self._sync()
        if tp not in self._assigned:
            raise EventLogError(
                f"{tp} is not assigned to this consumer of group {self.group_id!r} "
                f"(assigned: {sorted(self._assigned)}); poll first so the group assigns partitions"
            )
