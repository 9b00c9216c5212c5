"""The embedded log's storage: one SQLite database in WAL mode per log directory.

Every write is one short ``BEGIN IMMEDIATE`` transaction, so several processes on the same machine can
append, join groups and commit offsets concurrently (SQLite serialises writers; ``busy_timeout`` makes
the others wait instead of failing). With ``synchronous=NORMAL`` a committed transaction is in the WAL
file, i.e. handed to the OS: it survives ``kill -9`` of any process (not a power cut; set
``fsync=True`` for that, at a cost per send).
"""

from __future__ import annotations

import functools
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from driftloop.eventlog.base import EventLogError, Header

DB_NAME = "eventlog.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partitions(
    topic TEXT NOT NULL, partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL DEFAULT 0, log_start INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(topic, partition));
CREATE TABLE IF NOT EXISTS records(
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL, key BLOB, value BLOB NOT NULL, headers BLOB NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(topic, partition, offset));
CREATE TABLE IF NOT EXISTS groups(group_id TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members(
    group_id TEXT NOT NULL, member_id TEXT NOT NULL, topics TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY(group_id, member_id));
CREATE TABLE IF NOT EXISTS offsets(
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    PRIMARY KEY(group_id, topic, partition));
INSERT OR IGNORE INTO meta(key, value) VALUES ('topology', 0);
INSERT OR IGNORE INTO meta(key, value) VALUES ('instance', random());
"""


class Store:
    """One connection (with its own lock) to the log database; each producer/consumer has its own."""

    def __init__(self, directory: Path, *, busy_timeout_s: float = 30.0, fsync: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / DB_NAME
        self.lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self.conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self.conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            raise EventLogError(
                f"cannot open the embedded event log at {self.path}: {exc}; check the directory is writable "
                "and on a local disk (SQLite WAL needs shared memory, so not NFS)"
            ) from exc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on exit, rolled back on error."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read snapshot."""
        with self.lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def instance_id(conn: sqlite3.Connection) -> str:
    """The log's instance id: 64 random bits (SQLite's ``random()``, seeded from the OS), drawn once
    when the database is created (or first opened by a version that knew of it) and never changed."""
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
    return f"{int(value) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def ensure_topic(conn: sqlite3.Connection, topic: str, partitions: int) -> int:
    """Create ``topic`` if absent (inside a write transaction); return its partition count."""
    row = conn.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
    if row is not None:
        return int(row[0])
    conn.execute("INSERT INTO topics(name, partitions) VALUES (?, ?)", (topic, partitions))
    conn.executemany(
        "INSERT INTO partitions(topic, partition) VALUES (?, ?)", [(topic, p) for p in range(partitions)]
    )
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'topology'")
    return partitions


_NAME_LEN = struct.Struct("<H")
_VALUE_LEN = struct.Struct("<I")


@functools.lru_cache(maxsize=4096)
def _encoded_name(name: str) -> bytes:
    raw = name.encode()
    return _NAME_LEN.pack(len(raw)) + raw


def encode_headers(headers: Sequence[Header]) -> bytes:
    """Each header as name length (u16), UTF-8 name, value length (u32), value. Header names repeat
    from record to record (Seldon's eight on every logged event), so their encoding is cached."""
    parts: list[bytes] = []
    pack = _VALUE_LEN.pack
    for name, value in headers:
        parts += (_encoded_name(name), pack(len(value)), value)
    return b"".join(parts)


def decode_headers(blob: bytes) -> tuple[Header, ...]:
    headers: list[Header] = []
    pos = 0
    while pos < len(blob):
        (n,) = _NAME_LEN.unpack_from(blob, pos)
        pos += _NAME_LEN.size
        name = blob[pos : pos + n].decode()
        pos += n
        (v,) = _VALUE_LEN.unpack_from(blob, pos)
        pos += _VALUE_LEN.size
        headers.append((name, bytes(blob[pos : pos + v])))
        pos += v
    return tuple(headers)
