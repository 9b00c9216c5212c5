"""Write a message to a connection's socket now, not at the end of the event loop's iteration.

uvloop buffers a small ``transport.write`` and sends it after every callback of the current loop
iteration has run (asyncio's own transports try the socket at once). On the ingress's request path,
whatever runs after the write (metrics, request-log events, releasing the node connection) would
then delay the send; written at once, the other side starts on the message while that work runs.

:func:`write_now` tries the socket first when the transport holds nothing unsent (so bytes stay in
order) and is not closing (so the file descriptor is still the transport's); whatever the socket
does not take, and every error, goes to ``transport.write``, which buffers it or reports the error
to the protocol as it always does.
"""

from __future__ import annotations

import asyncio
import os


def socket_fd(transport: asyncio.BaseTransport) -> int:
    """The transport's socket descriptor, or -1 (then :func:`write_now` is ``transport.write``)."""
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (OSError, ValueError):
        return -1


def write_now(transport: asyncio.Transport, fd: int, data: bytes) -> None:
    if fd >= 0 and not transport.get_write_buffer_size() and not transport.is_closing():
        try:
            sent = os.write(fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:  # reset, broken pipe ...: the transport finds it too and tells the protocol
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)
