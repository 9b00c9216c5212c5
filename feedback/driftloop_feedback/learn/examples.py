"""What the trainer reads of a labelled example: its features and its target.

``LabelledExample.truth`` is a real value for a regressor and the true class label (a number or a
string) for a classifier. A record that names its label in ``truth_label`` or ``label`` is read from
there first.
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
