"""How a served classifier answers in V2 tensors (docs/CONTRACTS.md): the class label per row, in the
datatype its classes have (INT64 for integers, FP64 for other numbers, BYTES for strings), the class
probabilities FP64 [N, C] in the order of the class list, and that list as plain JSON values.

>>> labels = ClassLabels.of(np.array(["hot", "ok"], dtype=object))
>>> labels.datatype, labels.values
('BYTES', ['hot', 'ok'])
>>> out = labels.output("prediction", np.array([[0.2, 0.8], [0.9, 0.1]]))
>>> out.datatype, out.shape, out.data.root
('BYTES', [2], ['ok', 'hot'])
>>> ClassLabels.of(np.array([0, 1, 2])).datatype, ClassLabels.of(np.array([0.5, 1.5])).datatype
('INT64', 'FP64')
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from mlserver.types import ResponseOutput

from driftloop_servers.errors import ArtifactError


@dataclass(frozen=True)
class ClassLabels:
    """A classifier's classes (``classes_`` order) as V2 sees them."""

    datatype: str  # of the label tensor: INT64, FP64 or BYTES
    values: list[int] | list[float] | list[str]  # JSON-ready, for ``parameters.classes``

    @classmethod
    def of(cls, classes: np.ndarray) -> ClassLabels:
        """Refuses (``ArtifactError``) classes that are neither all numbers nor all strings."""
        items = np.asarray(classes).ravel().tolist()
        if len(items) < 2:
            raise ArtifactError(f"the classifier declares {len(items)} class(es) {items}; it needs 2 or more")
        if all(isinstance(c, str) for c in items):
            return cls("BYTES", [str(c) for c in items])
        if all(isinstance(c, numbers.Integral) for c in items):  # bools included: False/True -> 0/1
            return cls("INT64", [int(c) for c in items])
        if all(isinstance(c, numbers.Real) for c in items):
            return cls("FP64", [float(c) for c in items])
        kinds = sorted({type(c).__name__ for c in items})
        raise ArtifactError(
            f"the classifier's classes {items[:10]} mix types ({', '.join(kinds)}); V2 can serve classes "
            "that are all integers, all numbers or all strings: retrain with one label type"
        )

    def output(self, name: str, probabilities: np.ndarray) -> ResponseOutput:
        """The label tensor [N]: each row's most probable class (the first one on a tie)."""
        best = np.argmax(probabilities, axis=1).tolist()
        values = self.values
        return ResponseOutput(
            name=name, shape=[len(best)], datatype=self.datatype, data=[values[i] for i in best]
        )
