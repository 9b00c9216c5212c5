"""The record layout of a state changelog (a compacted topic), and the view a reader rebuilds from it.

A value is written as one **generation**: a per-key sequence number ``seq`` (one more than the newest
the writer knows) and a random nonce. Its bytes are split into chunks of at most ``chunk_bytes``, then a
**commit marker** follows, only once every chunk was acknowledged:

- chunk: key ``<scope>/<key>\\0<slot>\\0<index>``, value ``DLC1`` + seq (8 bytes) + nonce (8) + bytes;
- marker: key ``<scope>/<key>``, value ``DLM1`` + JSON ``{seq, nonce, slot, chunks, size, sha256}``, or
  ``{seq, deleted: true}``.

Chunk keys alternate between two **slots** (``a``, ``b``): a generation is written into the slot the
newest marker does not name. Compaction keeps the newest record per key, so it keeps the newest marker
and, in each slot, the newest chunks; a writer that dies halfway only ever overwrites the slot no
committed marker points at, and the committed generation stays whole. No tombstones are needed, and
the topic holds at most two copies of each value.

A reader applies records in offset order (all records of one key are on one partition): chunks are
held until their marker comes; a marker whose chunks are all there, of its generation, with its digest,
makes that generation the key's value; one that is not (a **torn** generation) is counted and ignored:
the previous value stands. Chunks of a generation no marker committed are never applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CHUNK_MAGIC = b"DLC1"
MARKER_MAGIC = b"DLM1"
_GEN = struct.Struct(">QQ")  # seq, nonce
SLOTS = ("a", "b")


@dataclass(frozen=True)
class Generation:
    seq: int
    nonce: int

    @classmethod
    def after(cls, seq: int) -> Generation:
        return cls(seq + 1, int.from_bytes(os.urandom(8), "big"))


def marker_key(scope: str, key: str) -> bytes:
    return f"{scope}/{key}".encode()


def chunk_key(scope: str, key: str, slot: str, index: int) -> bytes:
    return f"{scope}/{key}\0{slot}\0{index}".encode()


def encode_generation(
    scope: str, key: str, data: bytes, generation: Generation, slot: str, chunk_bytes: int
) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """(chunk records, marker record) as (key, value) pairs: send the chunks, and the marker only once
    every chunk was acknowledged."""
    prefix = CHUNK_MAGIC + _GEN.pack(generation.seq, generation.nonce)
    view = memoryview(data)
    count = max(1, -(-len(data) // chunk_bytes))
    chunks = [
        (chunk_key(scope, key, slot, i), prefix + view[i * chunk_bytes : (i + 1) * chunk_bytes])
        for i in range(count)
    ]
    header = {
        "seq": generation.seq,
        "nonce": generation.nonce,
        "slot": slot,
        "chunks": count,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    return chunks, (marker_key(scope, key), MARKER_MAGIC + json.dumps(header).encode())


def encode_deletion(scope: str, key: str, seq: int) -> tuple[bytes, bytes]:
    return marker_key(scope, key), MARKER_MAGIC + json.dumps({"seq": seq, "deleted": True}).encode()


@dataclass
class ChangelogView:
    """What the records of one scope read so far say: each key's newest complete value."""

    scope: str
    values: dict[str, bytes] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)  # slot of the newest complete generation
    seqs: dict[str, int] = field(default_factory=dict)  # newest committed seq (also deletions)
    nonces: dict[str, int] = field(default_factory=dict)  # and its nonce
    torn: int = 0  # markers whose generation was not complete (ignored)
    ignored: int = 0  # records of this scope that are not chunks or markers
    _chunks: dict[tuple[str, str, int], tuple[int, int, bytes]] = field(default_factory=dict)

    def next_generation(self, key: str) -> tuple[Generation, str]:
        """The generation and slot a writer of ``key`` uses next."""
        slot = "b" if self.slots.get(key) == "a" else "a"
        return Generation.after(self.seqs.get(key, 0)), slot

    def apply(self, record_key: bytes | None, value: bytes | None) -> None:
        prefix = f"{self.scope}/".encode()
        if record_key is None or not record_key.startswith(prefix) or value is None:
            return
        name = record_key[len(prefix) :].decode("utf-8", "replace")
        if "\0" in name:
            self._apply_chunk(name, value)
        else:
            self._apply_marker(name, value)

    def _apply_chunk(self, name: str, value: bytes) -> None:
        parts = name.split("\0")
        head = len(CHUNK_MAGIC) + _GEN.size
        if (
            len(parts) != 3
            or parts[1] not in SLOTS
            or not parts[2].isdigit()
            or not value.startswith(CHUNK_MAGIC)
        ):
            self.ignored += 1
            return
        key, slot, index = parts[0], parts[1], int(parts[2])
        seq, nonce = _GEN.unpack_from(value, len(CHUNK_MAGIC))
        if self._superseded(key, seq, nonce):
            return  # a leftover of an older generation, kept by compaction behind a newer marker
        self._chunks[(key, slot, index)] = (seq, nonce, value[head:])

    def _apply_marker(self, key: str, value: bytes) -> None:
        try:
            if not value.startswith(MARKER_MAGIC):
                raise ValueError("no marker magic")
            header = json.loads(value[len(MARKER_MAGIC) :])
            seq = int(header["seq"])
        except (ValueError, KeyError, TypeError):
            self.ignored += 1
            return
        if header.get("deleted"):
            self.values.pop(key, None)
            self.slots.pop(key, None)
            self.seqs[key] = max(seq, self.seqs.get(key, 0))
            self.nonces.pop(key, None)
            self._drop_chunks(key)
            return
        data = self._assemble(key, header)
        nonce = header.get("nonce")
        if data is None:
            self.torn += 1
            log.warning(
                "state changelog %s: generation %d of %r is incomplete; its previous value stands",
                self.scope,
                seq,
                key,
            )
            return
        self.values[key] = data
        self.slots[key] = header["slot"]
        self.seqs[key] = seq
        self.nonces[key] = int(nonce)  # checked by _assemble
        self._drop_chunks(key)

    def _assemble(self, key: str, header: dict[str, Any]) -> bytes | None:
        try:
            seq, nonce, slot = int(header["seq"]), int(header["nonce"]), str(header["slot"])
            count, size, digest = int(header["chunks"]), int(header["size"]), str(header["sha256"])
        except (KeyError, TypeError, ValueError):
            return None
        parts = []
        for i in range(count):
            chunk = self._chunks.get((key, slot, i))
            if chunk is None or chunk[0] != seq or chunk[1] != nonce:
                return None
            parts.append(chunk[2])
        data = b"".join(parts)
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            return None
        return data

    def _superseded(self, key: str, seq: int, nonce: int) -> bool:
        """Whether a chunk of generation (seq, nonce) belongs to the committed generation of ``key`` or
        an older one. A chunk of the committed seq with another nonce is a concurrent writer's (a
        replica that had not yet noticed its shard moved): kept, its marker may still come, and the
        later marker wins, as it does once compaction has kept only the newest."""
        committed = self.seqs.get(key, 0)
        return seq < committed or (seq == committed and nonce == self.nonces.get(key, nonce))

    def _drop_chunks(self, key: str) -> None:
        """Forget the chunks of ``key`` that the committed generation supersedes."""
        for ck in [
            ck for ck, chunk in self._chunks.items() if ck[0] == key and self._superseded(key, *chunk[:2])
        ]:
            del self._chunks[ck]
