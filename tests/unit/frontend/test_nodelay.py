"""The acceptor relies on uvloop setting TCP_NODELAY on every accepted TCP
connection (frontend/connection.py no longer sets it): a small MQTT packet
must not wait for Nagle's algorithm. Checked here so that an upgrade of
uvloop that stopped doing so is caught."""

from __future__ import annotations

import asyncio
import socket

import uvloop


def test_uvloop_sets_tcp_nodelay_on_accepted_connections() -> None:
    async def main() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await asyncio.get_running_loop().create_server(Probe, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    assert uvloop.run(main()) != 0
