"""The cost of any hop, for ``bench.ingress``: a TCP forwarder that copies bytes between a client's
connection and one connection to the upstream server, on uvloop, without reading HTTP. Whatever an
ingress does per request comes on top of what this costs: two more loopback writes, two more process
wake-ups. ``python -m bench.hop_peer UPSTREAM_HOST UPSTREAM_PORT LISTEN_PORT`` (127.0.0.1 only).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvloop


def _no_delay(transport: asyncio.BaseTransport) -> None:
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Upstream(asyncio.Protocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _no_delay(transport)

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class _Client(asyncio.Protocol):
    upstream_address: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.upstream: asyncio.Transport | None = None
        self.early: list[bytes] = []
        _no_delay(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        upstream, _ = await loop.create_connection(lambda: _Upstream(self), *self.upstream_address)
        self.upstream = upstream
        for data in self.early:
            upstream.write(data)

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.early.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()


async def serve(upstream_host: str, upstream_port: int, listen_port: int) -> None:
    _Client.upstream_address = (upstream_host, upstream_port)
    server = await asyncio.get_running_loop().create_server(_Client, "127.0.0.1", listen_port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
