"""Traffic split between predictors, the local stand-in for Istio's weighted routes.

Assignment is stable per ``Seldon-Puid``: the puid is hashed (BLAKE2b, 64 bits) to a bucket in
0..9999 and the bucket falls into a predictor's share of the cumulative weights. A client that
resends with the same puid reaches the same predictor, and over many distinct puids each predictor
receives its weight within binomial tolerance. A table is immutable; a change swaps the whole table,
so every request sees either the old or the new split, never a mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from driftloop_graphs.errors import GraphError

BUCKETS = 10_000


class InvalidTraffic(GraphError):
    """Weights that do not name the deployment's predictors or do not sum to 100."""


def bucket_of(puid: str) -> int:
    digest = hashlib.blake2b(puid.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def check_requested(weights: Mapping[str, object]) -> dict[str, int]:
    """Weights asked for through the control API: integers (not booleans) 0..100 that sum to 100,
    whatever the number of predictors (a lone predictor takes 100)."""
    bad = {name: w for name, w in weights.items() if type(w) is not int or not 0 <= w <= 100}
    if bad:
        raise InvalidTraffic(f"weights must be integers 0..100 (not booleans or fractions), got {bad}")
    checked = {name: int(w) for name, w in weights.items() if type(w) is int}
    total = sum(checked.values())
    if total != 100:
        raise InvalidTraffic(
            f"traffic of non-shadow predictors must sum to 100, got {total} from {checked or '{}'}"
        )
    return checked


@dataclass(frozen=True)
class TrafficTable:
    """Integer weights (percent) of the non-shadow predictors, in manifest order."""

    weights: tuple[tuple[str, int], ...]

    @classmethod
    def build(cls, weights: Mapping[str, int], predictors: list[str]) -> TrafficTable:
        """Validate ``weights`` against the non-shadow ``predictors``; names left out get 0."""
        unknown = sorted(set(weights) - set(predictors))
        if unknown:
            raise InvalidTraffic(
                f"unknown predictor(s) {unknown}; the deployment's predictors are {predictors}"
            )
        bad = {name: w for name, w in weights.items() if type(w) is not int or not 0 <= w <= 100}
        if bad:
            raise InvalidTraffic(f"weights must be integers 0..100, got {bad}")
        if len(predictors) == 1:
            return cls(((predictors[0], 100),))
        total = sum(weights.values())
        if total != 100:
            raise InvalidTraffic(f"traffic of non-shadow predictors must sum to 100, got {total}")
        return cls(tuple((name, int(weights.get(name, 0))) for name in predictors))

    def choose(self, puid: str) -> str:
        if len(self.weights) == 1:
            return self.weights[0][0]
        bucket = bucket_of(puid)
        upper = 0
        for name, weight in self.weights:
            upper += weight * (BUCKETS // 100)
            if bucket < upper:
                return name
        return self.weights[-1][0]

    def as_dict(self) -> dict[str, int]:
        return dict(self.weights)
