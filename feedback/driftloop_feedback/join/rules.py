"""What the join does with time, and the counters of every outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

JoinMode = Literal["auto", "request", "asset"]


@dataclass(frozen=True)
class JoinRules:
    """``mode``: ``request`` joins every row with truth posted for ``<request_id>:<row>``; ``asset``
    joins every row with the asset's reading at ``event_time + horizon_s``; ``auto`` uses the asset join
    for rows that carry an asset id, an event time and a horizon, and the request join for the rest."""

    mode: JoinMode = "auto"
    ttl_s: float = 7200.0
    allowed_lateness_s: float = 300.0
    tolerance_s: float = 150.0
    retention_s: float = 7200.0
    truth_field: str = "bearing_temp"
    default_horizon_s: float | None = None


@dataclass
class JoinCounters:
    joined: int = 0
    expired: int = 0
    unmatched: int = 0
    late: int = 0
    duplicate: int = 0
    orphan_truth: int = 0
    forwarded: int = 0
    incomplete: int = 0
    malformed: int = 0

    def add(self, other: JoinCounters) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
