"""The changelog's record layout and the view a reader rebuilds (no broker): chunking, torn generations
ignored, the newest complete generation wins, and Kafka's compaction of the topic changes nothing a
reader sees. The directory store's files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftloop.statestore import DirectoryStore, StateStoreError
from driftloop.statestore.changelog import ChangelogView, encode_deletion, encode_generation

Records = list[tuple[bytes, bytes]]
SCOPE = "joiner/g"


def generation(
    view: ChangelogView, key: str, data: bytes, chunk_bytes: int = 1024
) -> tuple[Records, tuple[bytes, bytes]]:
    gen, slot = view.next_generation(key)
    return encode_generation(SCOPE, key, data, gen, slot, chunk_bytes)


def replay(records: Records) -> ChangelogView:
    view = ChangelogView(SCOPE)
    for key, value in records:
        view.apply(key, value)
    return view


def compact(records: Records) -> Records:
    """What Kafka's log cleaner keeps: the last record of each key, in offset order."""
    last = {key: i for i, (key, _) in enumerate(records)}
    return [record for i, record in enumerate(records) if last[record[0]] == i]


def test_a_large_value_is_split_into_chunks_and_read_back_whole() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    chunks, marker = generation(ChangelogView(SCOPE), "request-0001.snapshot", data)
    assert len(chunks) == 10 and all(len(v) <= 1024 + 20 for _, v in chunks)
    assert len({k for k, _ in chunks}) == 10
    view = replay([*chunks, marker])
    assert view.values == {"request-0001.snapshot": data}
    assert view.slots == {"request-0001.snapshot": "a"}
    empty_chunks, empty_marker = generation(view, "k", b"")
    assert replay([*empty_chunks, empty_marker]).values == {"k": b""}


def test_chunks_without_their_marker_are_never_applied() -> None:
    view = ChangelogView(SCOPE)
    first_chunks, first_marker = generation(view, "k", b"one" * 1000)
    log = [*first_chunks, first_marker]
    view = replay(log)
    torn_chunks, _ = generation(view, "k", b"two" * 1000)
    log += torn_chunks[:2]  # the writer died before the rest and before its marker
    assert replay(log).values == {"k": b"one" * 1000}
    assert replay(log).torn == 0


def test_a_marker_whose_chunks_are_missing_or_altered_is_torn_and_ignored() -> None:
    view = ChangelogView(SCOPE)
    first_chunks, first_marker = generation(view, "k", b"one" * 1000)
    log = [*first_chunks, first_marker]
    second_chunks, second_marker = generation(replay(log), "k", b"two" * 1000)
    missing = replay([*log, *second_chunks[1:], second_marker])
    assert missing.values == {"k": b"one" * 1000} and missing.torn == 1
    key, value = second_chunks[0]
    altered = [(key, value[:-1] + bytes([value[-1] ^ 1])), *second_chunks[1:]]
    corrupt = replay([*log, *altered, second_marker])
    assert corrupt.values == {"k": b"one" * 1000} and corrupt.torn == 1


def test_the_newest_complete_generation_wins_and_slots_alternate() -> None:
    log: Records = []
    slots = []
    for n in range(4):
        view = replay(log)
        chunks, marker = generation(view, "k", f"v{n}".encode() * 700)
        log += [*chunks, marker]
        slots.append(replay(log).slots["k"])
    assert replay(log).values == {"k": b"v3" * 700}
    assert slots == ["a", "b", "a", "b"]
    assert replay(log).seqs == {"k": 4}


def test_other_scopes_are_not_read_and_a_deletion_removes_the_key() -> None:
    view = ChangelogView(SCOPE)
    chunks, marker = generation(view, "k", b"x")
    other_chunks, other_marker = encode_generation(
        "monitor/g", "k", b"y", *ChangelogView("monitor/g").next_generation("k"), 1024
    )
    log = [*chunks, marker, *other_chunks, other_marker]
    assert replay(log).values == {"k": b"x"}
    log.append(encode_deletion(SCOPE, "k", replay(log).seqs["k"] + 1))
    assert replay(log).values == {}
    again_chunks, again_marker = generation(replay(log), "k", b"z")
    assert replay([*log, *again_chunks, again_marker]).values == {"k": b"z"}


# A write: key index, size, and how far it got before its writer died (None: it finished).
writes = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 5000), st.none() | st.integers(0, 6)), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(writes)
def test_a_compacted_log_reads_as_the_last_complete_write_of_each_key(
    ops: list[tuple[int, int, int | None]],
) -> None:
    """Writers that die at any point of a write (after some chunks, before the marker), each replaced by
    one that restored from the log, and Kafka's compaction at any moment: a reader always sees, per key,
    the last write that finished, whole."""
    log: Records = []
    expected: dict[str, bytes] = {}
    for n, (k, size, died_after) in enumerate(ops):
        key = f"shard-{k}"
        data = hashlib.sha256(f"{n}".encode()).digest() * (size // 32 + 1)
        chunks, marker = generation(replay(log), key, data[:size], chunk_bytes=1024)
        if died_after is None:
            log += [*chunks, marker]
            expected[key] = data[:size]
        else:
            log += chunks[:died_after]
        assert replay(log).values == expected
        assert replay(compact(log)).values == expected
        assert replay([*compact(log[: len(log) // 2]), *log[len(log) // 2 :]]).values == expected


def test_the_directory_store_keeps_one_file_per_key(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "joiner" / "g")
    assert store.read("request-0000.snapshot") is None
    store.write_many({"request-0000.snapshot": b"a", "request-0001.snapshot": b"b"})
    assert (tmp_path / "joiner" / "g" / "request-0000.snapshot").read_bytes() == b"a"
    store.write("request-0000.snapshot", b"c")
    assert store.read("request-0000.snapshot") == b"c"
    assert store.discard("request-0000.snapshot").endswith("request-0000.snapshot.discarded")
    assert store.read("request-0000.snapshot") is None
    assert store.read("request-0000.snapshot.discarded") == b"c"
    with pytest.raises(StateStoreError, match="not a plain name"):
        store.read("../escape")


def test_two_writers_of_one_generation_read_as_the_later_marker_before_and_after_compaction() -> None:
    """A replica that has not noticed its shard moved writes the same generation number as the shard's
    new owner (both restored the same value): the later marker wins, on the full log as after Kafka
    kept only the newest record of each key."""
    view = ChangelogView(SCOPE)
    chunks, marker = generation(view, "k", b"restored" * 300)
    log = [*chunks, marker]
    restored = replay(log)
    zombie_chunks, zombie_marker = generation(restored, "k", b"zombie" * 400)
    owner_chunks, owner_marker = generation(restored, "k", b"owner" * 500)
    log += [*zombie_chunks, zombie_marker, *owner_chunks, owner_marker]
    assert replay(log).values == {"k": b"owner" * 500}
    assert replay(compact(log)).values == {"k": b"owner" * 500}
    after = generation(replay(log), "k", b"next")
    assert replay([*log, *after[0], after[1]]).values == {"k": b"next"}
