"""A fix for kafka-python 3.0 applied when driftloop's Kafka log is imported.

``kafka.net.inet.KafkaNetSocket.connect`` opens a socket and does not close it when the connection
attempt fails (refused, timed out). A client retrying a broker that is down or restarting therefore
leaks one file descriptor per attempt, which over hours of retries exhausts the process's limit. The
replacement does the same steps and closes the socket on failure. Proxy socket classes override
``connect`` themselves and are left alone.
"""

from __future__ import annotations

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
