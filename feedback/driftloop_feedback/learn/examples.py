"""What the trainer reads of a labelled example: its features and its target.

A labelled example carries a real value (``truth``) for a regressor; for a classifier it carries the
true class label. Until ``LabelledExample`` has a field of its own for the label, the label is read from
``truth_label`` or ``label`` when the record has one, else from ``truth``.
"""

from __future__ import annotations

from typing import Any

LABEL_FIELDS = ("truth_label", "label")


def example_target(example: Any) -> Any:
    for name in LABEL_FIELDS:
        value = getattr(example, name, None)
        if value is not None:
            return value
    return example.truth
