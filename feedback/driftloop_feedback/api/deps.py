"""Everything the routers depend on, built once per app (no globals): settings, the clock, the
event-log producer, the record ledger, counters and the Prometheus registry."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from driftloop.eventlog import EventLog, Producer
from driftloop_feedback.api.ledger import RecordLedger
from driftloop_feedback.api.problems import ApiError
from driftloop_feedback.api.settings import FeedbackSettings

Clock = Callable[[], float]


@dataclass
class ServiceState:
    settings: FeedbackSettings
    event_log: EventLog
    producer: Producer
    ledger: RecordLedger
    clock: Clock  # unix seconds: stamps received_at
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.records = Counter(
            "driftloop_feedback_records",
            "records (truth rows and readings) of accepted requests, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate"):
            self.records.labels(outcome)
        self.batches = Counter("driftloop_feedback_batches", "requests accepted", registry=self.registry)
        self.refusals = Counter(
            "driftloop_feedback_refused",
            "requests answered with a status >= 400 (every route, every reason), by status",
            ["status"],
            registry=self.registry,
        )

    def count(self, outcome: str, n: int = 1) -> None:
        self.records.labels(outcome).inc(n)

    def refused(self, status: int) -> None:
        self.refusals.labels(str(status)).inc()

    def refused_by_status(self) -> dict[str, int]:
        return {
            sample.labels["status"]: int(sample.value)
            for metric in self.refusals.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }

    def total(self, outcome: str) -> int:
        return next(
            int(sample.value)
            for metric in self.records.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["outcome"] == outcome
        )

    def batches_total(self) -> int:
        return next(
            int(s.value) for m in self.batches.collect() for s in m.samples if s.name.endswith("_total")
        )


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.feedback
    return state


State = Annotated[ServiceState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False)


def require_token(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected = state.settings.token.get_secret_value()
    if not expected:
        return  # development mode without a token (the settings refuse this in production)
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong bearer token: send 'Authorization: Bearer <DRIFTLOOP_FEEDBACK_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)
