"""Everything the routers depend on, built once per app (no globals): settings, the event-log
producer, the resend memory, counters and the Prometheus registry."""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from driftloop.eventlog import EventLog, Producer
from driftloop_feedback.api.settings import FeedbackSettings


class RecentIds:
    """The last ``capacity`` accepted record ids (answers 'duplicate' for a resend to this process)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def add(self, record_id: str) -> None:
        if self.capacity == 0:
            return
        self._ids[record_id] = None
        self._ids.move_to_end(record_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclass
class ServiceState:
    settings: FeedbackSettings
    event_log: EventLog
    producer: Producer
    recent: RecentIds
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: int = 0

    def __post_init__(self) -> None:
        self.records = Counter(
            "driftloop_feedback_records",
            "ground-truth records by outcome",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("accepted", "duplicate", "rejected"):
            self.records.labels(outcome)

    def count(self, outcome: str, n: int = 1) -> None:
        self.records.labels(outcome).inc(n)

    def total(self, outcome: str) -> int:
        return int(self.records.labels(outcome)._value.get())


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
        state.count("rejected")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token: send 'Authorization: Bearer <DRIFTLOOP_FEEDBACK_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)
