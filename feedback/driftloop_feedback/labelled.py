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

from collections import OrderedDict
from collections.abc import Iterable, Iterator

from driftloop_feedback.labelled_batch import decode_labelled
from driftloop_feedback.records import LabelledExample


class LabelledDeduper:
    def __init__(self, window: int = 1_000_000) -> None:
        self.window = window
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

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
        seen, window = self._seen, self.window
        fresh = []
        for example_id in example_ids:
            if example_id in seen:
                self.duplicates += 1
                fresh.append(False)
                continue
            seen[example_id] = None
            if len(seen) > window:
                seen.popitem(last=False)
            fresh.append(True)
        return fresh
