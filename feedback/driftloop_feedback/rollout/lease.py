"""One rollout at a time per deployment: a lease with a holder and an expiry.

``FileLease`` is the local target's: a JSON record ``{"holder", "expires_at", "deployment"}`` in a file,
read and rewritten under an exclusive ``fcntl`` lock so two controllers never both win. A holder renews
it on every tick; a lease not renewed for ``ttl_s`` (the holder died) may be taken over, and the
taken-over holder finds out on its next renewal (``LeaseLostError``) and stops touching the deployment.
A Kubernetes ``coordination.k8s.io/v1`` Lease (holderIdentity, renewTime, leaseDurationSeconds) has the
same shape and fits the ``Lease`` Protocol.

Expiry is compared across processes, so the clock must be the wall clock in production (tests inject one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from driftloop_feedback.rollout.errors import LeaseHeldError, LeaseLostError

Clock = Callable[[], float]


def new_holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    expires_at: float
    deployment: str


class Lease(Protocol):
    holder: str

    def acquire(self) -> None:
        """Take the lease, or raise ``LeaseHeldError`` naming the live holder."""
        ...

    def renew(self) -> None:
        """Extend the lease, or raise ``LeaseLostError`` if another holder has it now."""
        ...

    def release(self) -> None: ...

    def current(self) -> LeaseRecord | None: ...


class FileLease:
    def __init__(
        self, path: Path, deployment: str, ttl_s: float, clock: Clock, holder: str | None = None
    ) -> None:
        self.path = path
        self.deployment = deployment
        self.ttl_s = ttl_s
        self.clock = clock
        self.holder = holder or new_holder_id()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _read(handle: IO[str]) -> LeaseRecord | None:
        handle.seek(0)
        text = handle.read().strip()
        if not text:
            return None
        try:
            data = json.loads(text)
            return LeaseRecord(str(data["holder"]), float(data["expires_at"]), str(data["deployment"]))
        except (ValueError, KeyError, TypeError):
            return None  # a torn or foreign record: treated as free, and overwritten

    def _write(self, handle: IO[str], record: LeaseRecord | None) -> None:
        handle.seek(0)
        handle.truncate()
        if record is not None:
            handle.write(json.dumps(record.__dict__))
        handle.flush()
        os.fsync(handle.fileno())

    def current(self) -> LeaseRecord | None:
        if not self.path.exists():
            return None
        with self._locked() as handle:
            return self._read(handle)

    def acquire(self) -> None:
        now = self.clock()
        with self._locked() as handle:
            record = self._read(handle)
            if record is not None and record.holder != self.holder and record.expires_at > now:
                raise LeaseHeldError(
                    f"the rollout lease of {self.deployment} is held by {record.holder} for another "
                    f"{record.expires_at - now:.0f} s ({self.path}): one rollout controller per deployment; "
                    "stop the other one, or wait for its lease to expire"
                )
            self._write(handle, LeaseRecord(self.holder, now + self.ttl_s, self.deployment))

    def renew(self) -> None:
        now = self.clock()
        with self._locked() as handle:
            record = self._read(handle)
            if record is not None and record.holder != self.holder:
                raise LeaseLostError(
                    f"the rollout lease of {self.deployment} was taken over by {record.holder} (ours "
                    "expired): this controller stops without touching the deployment"
                )
            self._write(handle, LeaseRecord(self.holder, now + self.ttl_s, self.deployment))

    def release(self) -> None:
        with self._locked() as handle:
            record = self._read(handle)
            if record is not None and record.holder == self.holder:
                self._write(handle, None)
