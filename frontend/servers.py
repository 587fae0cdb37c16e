"""The acceptor's servers: one per listener (flockmq/listeners.py), each on
its own SO_REUSEPORT socket shared by every acceptor process.

A listener's connections are `ClientConnection`s; with TLS the transport
under them is the event loop's SSL transport (the handshake bounded by the
connect timeout), with WebSocket a `WebSocketProtocol` unwraps the frames
first. Either way the client session above sees MQTT bytes only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flockmq.listeners import Listener

from .authentication import Authenticator
from .connection import ClientConnection
from .passwords import PasswordFile
from .tls import server_context

if TYPE_CHECKING:
    from .acceptor import Acceptor

log = logging.getLogger("flockmq.acceptor")

BACKLOG = 4096


@dataclass(slots=True)
class ListenerEndpoint:
    """One listener as an acceptor serves it."""

    listener: Listener
    authenticator: Authenticator
    connections: int = 0  # open now, in this acceptor

    def full(self) -> bool:
        limit = self.listener.max_connections
        return limit > 0 and self.connections >= limit


def endpoint_for(
    listener: Listener, passwords: PasswordFile | None = None, allow_anonymous: bool | None = None
) -> ListenerEndpoint:
    return ListenerEndpoint(listener, Authenticator(listener, passwords, allow_anonymous))


def listening_socket(listener: Listener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((listener.host, listener.port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def start_servers(
    acceptor: Acceptor, listeners: list[Listener], passwords: PasswordFile | None
) -> list[tuple[ListenerEndpoint, asyncio.Server]]:
    servers = []
    config = acceptor.config
    for listener in listeners:
        endpoint = endpoint_for(listener, passwords, config.allow_anonymous)
        context = server_context(listener) if listener.tls else None
        server = await acceptor.loop.create_server(
            _factory(acceptor, endpoint),
            sock=listening_socket(listener),
            backlog=BACKLOG,
            ssl=context,
            ssl_handshake_timeout=config.connect_timeout if context is not None else None,
        )
        servers.append((endpoint, server))
        log.info("acceptor %d listening on %s", acceptor.index, listener.name)
    return servers


def _factory(acceptor: Acceptor, endpoint: ListenerEndpoint) -> Callable[[], asyncio.Protocol]:
    listener = endpoint.listener
    if listener.protocol == "websockets":
        # wsproto and h11: 2-7 MiB, only in the brokers with a WebSocket listener
        from .websocket_transport import WebSocketProtocol

        def websocket() -> asyncio.Protocol:
            return WebSocketProtocol(
                ClientConnection(acceptor, endpoint),
                listener.path,
                listener.max_websocket_message,
                acceptor.websocket_ended,
            )

        return websocket

    def plain() -> asyncio.Protocol:
        return ClientConnection(acceptor, endpoint)

    return plain
