"""Seldon Core v1's request logger format on Kafka, shared by the producer (local runtime) and consumers.

Seldon's executor writes one message per logged node and event: the value is the raw payload (the V2
request or response JSON), there is **no key**, and these headers are set (DESIGN section 3). Chained
nodes log more than once per call; consumers dedupe on (requestid, modelid, type).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_TOPIC = "seldon"

TYPE_REQUEST = "io.seldon.serving.inference.request"
TYPE_RESPONSE = "io.seldon.serving.inference.response"
TYPE_FEEDBACK = "io.seldon.serving.feedback"
EVENT_TYPES = frozenset({TYPE_REQUEST, TYPE_RESPONSE, TYPE_FEEDBACK})

H_TYPE = "type"
H_CONTENT_TYPE = "content-type"
H_MODEL_ID = "modelid"
H_REQUEST_ID = "requestid"
H_DEPLOYMENT = "inferenceservicename"
H_NAMESPACE = "namespace"
H_ENDPOINT = "endpoint"
H_PROTOCOL = "protocol"
HEADER_NAMES = (
    H_TYPE,
    H_CONTENT_TYPE,
    H_MODEL_ID,
    H_REQUEST_ID,
    H_DEPLOYMENT,
    H_NAMESPACE,
    H_ENDPOINT,
    H_PROTOCOL,
)


@dataclass(slots=True)  # made twice per logged request and per event read: frozen's __init__ costs 6x
class LogEvent:
    """One request-logger message, decoded from its headers; ``payload`` is the raw value."""

    type: str
    request_id: str
    model_id: str
    deployment: str
    namespace: str
    endpoint: str
    protocol: str
    content_type: str
    payload: bytes

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        return (self.request_id, self.model_id, self.type)

    def headers(self) -> list[tuple[str, bytes]]:
        """The message's headers, in ``HEADER_NAMES`` order."""
        return [
            (H_TYPE, self.type.encode()),
            (H_CONTENT_TYPE, self.content_type.encode()),
            (H_MODEL_ID, self.model_id.encode()),
            (H_REQUEST_ID, self.request_id.encode()),
            (H_DEPLOYMENT, self.deployment.encode()),
            (H_NAMESPACE, self.namespace.encode()),
            (H_ENDPOINT, self.endpoint.encode()),
            (H_PROTOCOL, self.protocol.encode()),
        ]


class MalformedLogEvent(ValueError):
    """A message on the request-log topic lacks a header Seldon always sets, or has an unknown type."""


def parse_event(
    headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str], payload: bytes
) -> LogEvent:
    """Decode a message exactly as Seldon's executor writes it; raise :class:`MalformedLogEvent` if not."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for name, raw in items:
        found[name.lower()] = raw.decode() if isinstance(raw, bytes) else raw
    required = (H_TYPE, H_REQUEST_ID, H_MODEL_ID)
    missing = [name for name in required if not found.get(name)]
    if missing:
        raise MalformedLogEvent(f"request-log message lacks header(s) {missing}; got {sorted(found)}")
    if found[H_TYPE] not in EVENT_TYPES:
        raise MalformedLogEvent(f"unknown request-log event type {found[H_TYPE]!r}")
    return LogEvent(
        type=found[H_TYPE],
        request_id=found[H_REQUEST_ID],
        model_id=found[H_MODEL_ID],
        deployment=found.get(H_DEPLOYMENT, ""),
        namespace=found.get(H_NAMESPACE, ""),
        endpoint=found.get(H_ENDPOINT, ""),
        protocol=found.get(H_PROTOCOL, ""),
        content_type=found.get(H_CONTENT_TYPE, "application/json"),
        payload=payload,
    )
