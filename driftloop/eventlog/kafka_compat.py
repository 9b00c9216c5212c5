"""A fix for kafka-python 3.0 applied when driftloop's Kafka log is imported.

``kafka.net.inet.KafkaNetSocket.connect`` opens a socket and does not close it when the connection
attempt fails (refused, timed out). A client retrying a broker that is down or restarting therefore
leaks one file descriptor per attempt, which over hours of retries exhausts the process's limit. The
replacement does the same steps and closes the socket on failure. Proxy socket classes override
``connect`` themselves and are left alone.
"""

from __future__ import annotations

import contextlib
from typing import Any

from kafka.net.inet import KafkaNetSocket

_original_connect = KafkaNetSocket.connect


async def _connect_closing_on_failure(
    self: Any, net: Any, addrinfo: Any, socket_options: Any = (), timeout_at: float | None = None
) -> Any:
    family, sock_type, proto, _canonname, sockaddr = addrinfo
    sock = self.socket(family, sock_type, proto)
    try:
        sock.setblocking(False)
        for option in socket_options:
            sock.setsockopt(*option)
        return await self.sock_connect(net, sock, sockaddr, timeout_at=timeout_at)
    except BaseException:
        sock.close()
        raise


def install() -> None:
    """Idempotent: patch only kafka-python's own plain-socket ``connect``."""
    if KafkaNetSocket.connect is _original_connect:
        KafkaNetSocket.connect = _connect_closing_on_failure


def close_sockets(client: Any) -> int:
    """Close the sockets a closed kafka-python client left open; returns how many. A transport closed
    while it still had bytes to send waits for a flush that never comes once the client's network
    thread has stopped, so its socket stays open until garbage collection closes it, at a random
    later moment (with a ResourceWarning). Call only after the client's ``close()``: its network thread
    is stopped by then, so nothing else uses these sockets."""
    manager = getattr(getattr(client, "_client", None), "_manager", None) or getattr(client, "_manager", None)
    closed = 0
    for conn in list(getattr(manager, "_conns", {}).values()):
        transport: Any = getattr(conn, "transport", None)
        sock = getattr(transport, "_sock", None)
        if transport is None or sock is None:
            continue
        transport._sock = None
        with contextlib.suppress(OSError):
            sock.close()
        closed += 1
    return closed
