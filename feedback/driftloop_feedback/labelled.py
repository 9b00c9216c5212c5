"""Reading ``driftloop.labelled`` as the trainer should: each example once.

The topic is at-least-once: after a joiner crash, examples made after its last snapshot are written
again, with the same ``example_id`` and the same content. ``LabelledDeduper`` keeps the first record
of each ``example_id`` among the last ``window`` ids (replays follow the original within one
checkpoint interval, so a window of a few checkpoints' worth of examples is enough).

>>> from driftloop_feedback.records import LabelledExample
>>> e = LabelledExample("r1:0", "r1", 0, (1.0,), 2.0, 2.5, "main", "3", 10.0, 11.0, "request")
>>> dedupe = LabelledDeduper(window=100)
>>> [x.example_id for x in dedupe.feed([e.encode(), e.encode()])], dedupe.duplicates
(['r1:0'], 1)
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

import orjson

from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.records import LabelledExample


class LabelledDeduper:
    def __init__(self, window: int = 1_000_000) -> None:
        self.window = window
        self.duplicates = 0
        self._seen: dict[str, None] = {}  # the ids remembered
        self._order: deque[str] = deque(maxlen=window)  # the same ids, oldest first

    def __getstate__(self) -> dict[str, Any]:
        """The remembered ids pickle as one JSON array, oldest first (pickling a dict of them costs
        several times more: the trainer's checkpoint holds up to ``window`` of them)."""
        ids: Any = list(self._order)
        with contextlib.suppress(orjson.JSONEncodeError):  # an id that is not UTF-8 text: as a list
            ids = orjson.dumps(ids)
        return {"window": self.window, "duplicates": self.duplicates, "ids": ids}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.window, self.duplicates = state["window"], state["duplicates"]
        if "ids" in state:
            ids = state["ids"]
            ids = orjson.loads(ids) if isinstance(ids, bytes) else ids
        else:  # pickled before __getstate__: an OrderedDict of the ids, oldest first
            ids = list(state["_seen"])
        self._order = deque(ids, maxlen=self.window)
        self._seen = dict.fromkeys(self._order)

    def feed(self, values: Iterable[bytes]) -> Iterator[LabelledExample]:
        """Decoded examples (each record read by ``decode_labelled``: one JSON example or a batch
        record), skipping any ``example_id`` seen within the window (counted)."""
        for value in values:
            examples = decode_labelled(value)
            for example, fresh in zip(examples, self.first_seen(e.example_id for e in examples), strict=True):
                if fresh:
                    yield example

    def first_seen(self, example_ids: Iterable[str]) -> list[bool]:
        """For each id in order, whether it is new within the window (then remembered; else counted as
        a duplicate): the same rule as ``feed`` for callers that decode records themselves."""
        seen, order, window = self._seen, self._order, self.window
        ids = example_ids if isinstance(example_ids, list) else list(example_ids)
        unique = dict.fromkeys(ids)
        if len(unique) == len(ids) and seen.keys().isdisjoint(unique):
            # the usual batch: no id repeated, none seen before; the same outcome as one at a time, in C
            extra = len(order) + len(ids) - window
            oldest = list(islice(order, max(0, min(extra, len(order)))))
            seen.update(unique)
            order.extend(ids)  # a full deque drops the oldest
            deque(map(seen.pop, oldest), maxlen=0)
            for example_id in ids[: max(0, len(ids) - window)]:  # a batch longer than the window
                seen.pop(example_id, None)
            return [True] * len(ids)
        fresh = []
        for example_id in ids:
            if example_id in seen:
                self.duplicates += 1
                fresh.append(False)
                continue
            if len(order) == window:
                del seen[order[0]]
            seen[example_id] = None
            order.append(example_id)
            fresh.append(True)
        return fresh
