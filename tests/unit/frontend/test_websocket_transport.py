"""flockmq.frontend.websocket_transport: a protocol under WebSocket sees plain
bytes, over a real socket on 127.0.0.1 with a wsproto client."""

from __future__ import annotations

import asyncio

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Event, Request

from flockmq.frontend.websocket_transport import WebSocketProtocol


class Echo(asyncio.Protocol):
    """Stands for the client connection: echoes, closes on b"bye"."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = b""
        self.lost = asyncio.Event()
        self.peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.received += data
        if data == b"bye":
            self.transport.close()
        else:
            self.transport.write(data.upper())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def events(reader: asyncio.StreamReader, ws: WSConnection, want: int) -> list[Event]:
    got: list[Event] = []
    while len(got) < want:
        data = await asyncio.wait_for(reader.read(65536), 10)
        ws.receive_data(data or None)
        got.extend(ws.events())
        if not data:
            break
    return got


async def serve_and_connect(
    inner: Echo,
) -> tuple[asyncio.Server, asyncio.StreamReader, asyncio.StreamWriter]:
    """A server on a free 127.0.0.1 port whose connections wrap `inner`, and
    a plain TCP client of it."""
    server = await asyncio.get_running_loop().create_server(
        lambda: WebSocketProtocol(inner), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return server, reader, writer


async def close(server: asyncio.Server, writer: asyncio.StreamWriter) -> None:
    writer.close()
    server.close()
    await server.wait_closed()


def test_the_inner_protocol_sees_plain_bytes() -> None:
    async def scenario() -> None:
        inner = Echo()
        server, reader, writer = await serve_and_connect(inner)
        ws = WSConnection(ConnectionType.CLIENT)
        writer.write(ws.send(Request("localhost", "/mqtt", subprotocols=["mqtt"])))
        (accept,) = await events(reader, ws, 1)
        assert isinstance(accept, AcceptConnection)
        # one message in two frames, and two messages in one write
        writer.write(ws.send(BytesMessage(b"hel", message_finished=False)))
        writer.write(ws.send(BytesMessage(b"lo")))
        echoed = b""
        while len(echoed) < 5:  # one message or two, as the socket delivered them
            got = await events(reader, ws, 1)
            echoed += b"".join(bytes(e.data) for e in got if isinstance(e, BytesMessage))
        assert echoed == b"HELLO"
        assert inner.peer == writer.get_extra_info("sockname")
        # the inner protocol closes: the client gets a close frame
        writer.write(ws.send(BytesMessage(b"bye")))
        (closing,) = await events(reader, ws, 1)
        assert isinstance(closing, CloseConnection)
        assert closing.code == 1000
        await asyncio.wait_for(inner.lost.wait(), 10)
        assert inner.received == b"hellobye"
        await close(server, writer)

    asyncio.run(scenario())


def test_a_refused_upgrade_closes_the_socket_and_tells_the_inner_protocol() -> None:
    async def scenario() -> None:
        inner = Echo()
        server, reader, writer = await serve_and_connect(inner)
        writer.write(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")  # no upgrade at all
        answer = await asyncio.wait_for(reader.read(), 10)
        assert answer.startswith(b"HTTP/1.1 400")
        await asyncio.wait_for(inner.lost.wait(), 10)
        assert inner.received == b""
        await close(server, writer)

    asyncio.run(scenario())
