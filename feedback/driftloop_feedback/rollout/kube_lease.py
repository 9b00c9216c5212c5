"""One rollout controller at a time on a cluster: a ``coordination.k8s.io/v1`` Lease (the ``Lease`` Protocol
of ``lease.py``, like ``FileLease``).

The Lease object is shipped with the manifests (``manifests/base/loop/rollout-rbac.yaml``, empty spec) so
the controller's Role needs only ``get`` and ``update`` on that one name (RBAC cannot limit ``create`` to a
name). Every write is a replace carrying the resourceVersion just read: two controllers racing for it
cannot both win (the second gets 409 Conflict). ``holderIdentity``, ``renewTime`` and
``leaseDurationSeconds`` say who holds it until when; a lease not renewed for its duration may be taken
over (``leaseTransitions`` counts takeovers), and the holder it was taken from gets ``LeaseLostError`` on
its next renewal. Times come from the injected clock (the wall clock in production).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from lightkube import ApiError, Client
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource

from driftloop_feedback.rollout.errors import BackendError, LeaseHeldError, LeaseLostError
from driftloop_feedback.rollout.lease import Clock, LeaseRecord, new_holder_id

# As a plain mapping, so the times are written as the API's MicroTime wants them (always six fractional
# digits; lightkube's typed model drops them for a whole second, which the server refuses).
LeaseObject = create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")
LeaseSpec = dict[str, Any]


def _micro_time(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def lease_name_for(deployment: str) -> str:
    """The shipped Lease's name for a SeldonDeployment: ``driftloop-rollout-<name>``."""
    return f"driftloop-rollout-{deployment}"


class KubeLease:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        deployment: str,
        ttl_s: float,
        clock: Clock,
        holder: str | None = None,
    ) -> None:
        self._client = client
        self.namespace = namespace
        self.name = name
        self.deployment = deployment
        self.ttl_s = max(1, math.ceil(ttl_s))  # leaseDurationSeconds is whole seconds
        self.clock = clock
        self.holder = holder or new_holder_id()

    # -- the object ------------------------------------------------------------------------------------
    def _get(self) -> GenericNamespacedResource:
        try:
            return self._client.get(LeaseObject, self.name, namespace=self.namespace)
        except ApiError as exc:
            hint = (
                " (the Lease is shipped with the manifests: kubectl apply -k manifests/overlays/<env>)"
                if exc.status.code == 404
                else ""
            )
            raise BackendError(
                f"cannot read Lease {self.namespace}/{self.name}: "
                f"{exc.status.code} {exc.status.message}{hint}"
            ) from exc

    def _replace(self, lease: GenericNamespacedResource, spec: LeaseSpec) -> bool:
        """Write ``spec`` over the version read; False on 409 Conflict (someone wrote it in between)."""
        lease["spec"] = spec
        try:
            self._client.replace(lease)
        except ApiError as exc:
            if exc.status.code == 409:
                return False
            raise BackendError(
                f"cannot update Lease {self.namespace}/{self.name}: {exc.status.code} {exc.status.message}"
            ) from exc
        return True

    def _record(self, spec: LeaseSpec) -> LeaseRecord | None:
        holder = spec.get("holderIdentity")
        if not holder:
            return None
        expires = _seconds(spec.get("renewTime")) + float(spec.get("leaseDurationSeconds") or 0)
        return LeaseRecord(str(holder), expires, self.deployment)

    def _mine(self, previous: LeaseSpec, now: float) -> LeaseSpec:
        stamp = _micro_time(now)
        before = previous.get("holderIdentity")
        transitions = int(previous.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.ttl_s,
            "acquireTime": previous.get("acquireTime") if before == self.holder else stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions + 1 if before and before != self.holder else transitions,
        }

    # -- the Protocol ----------------------------------------------------------------------------------
    def current(self) -> LeaseRecord | None:
        return self._record(_spec(self._get()))

    def acquire(self) -> None:
        now = self.clock()
        lease = self._get()
        record = self._record(_spec(lease))
        if record is not None and record.holder != self.holder and record.expires_at > now:
            raise LeaseHeldError(
                f"the rollout lease of {self.deployment} (Lease {self.namespace}/{self.name}) is held by "
                f"{record.holder} for another {record.expires_at - now:.0f} s: one rollout controller per "
                "deployment; stop the other one, or wait for its lease to expire"
            )
        if not self._replace(lease, self._mine(_spec(lease), now)):
            raise LeaseHeldError(
                f"another controller wrote Lease {self.namespace}/{self.name} while this one took it "
                f"(holder now: {self._holder_now()}): one rollout controller per deployment"
            )

    def renew(self) -> None:
        for _ in range(2):
            now = self.clock()
            lease = self._get()
            spec = _spec(lease)
            holder = spec.get("holderIdentity")
            if holder and holder != self.holder:
                raise LeaseLostError(
                    f"the rollout lease of {self.deployment} (Lease {self.namespace}/{self.name}) was taken "
                    f"over by {holder} (ours expired): this controller stops without touching "
                    "the deployment"
                )
            if self._replace(lease, self._mine(spec, now)):
                return
        raise LeaseLostError(
            f"Lease {self.namespace}/{self.name} kept changing under this controller's renewal (holder now: "
            f"{self._holder_now()}): it stops without touching the deployment"
        )

    def release(self) -> None:
        for _ in range(2):
            lease = self._get()
            spec = _spec(lease)
            if spec.get("holderIdentity") != self.holder:
                return
            if self._replace(lease, {"leaseTransitions": int(spec.get("leaseTransitions") or 0)}):
                return

    def _holder_now(self) -> str:
        record = self.current()
        return record.holder if record is not None else "nobody"


def _spec(lease: GenericNamespacedResource) -> LeaseSpec:
    spec = lease.get("spec")
    return dict(spec) if isinstance(spec, dict) else {}
