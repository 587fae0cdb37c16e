"""WebSocket under a client connection: an asyncio protocol that unwraps the
socket's WebSocket frames for the connection, and a transport the connection
writes MQTT bytes to, which wraps them (issue 11).

The client connection (and its session) never learns that WebSocket is there:
it gets `connection_made(transport)`, `data_received(mqtt bytes)`,
`eof_received()`, `connection_lost()`, flow control, and writes MQTT bytes, as
on a plain TCP or TLS socket. The framing rules are `WebSocketStream`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from flockmq.frontend.websocket import Received, WebSocketStream

log = logging.getLogger(__name__)


class WebSocketTransport(asyncio.Transport):
    """What the connection writes to: MQTT bytes in, WebSocket frames out."""

    def __init__(self, raw: asyncio.Transport, stream: WebSocketStream) -> None:
        super().__init__()
        self.raw = raw
        self.stream = stream

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            framed = self.stream.send(bytes(data))
            if framed:
                self.raw.write(framed)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        if not self.raw.is_closing():
            closing = self.stream.close(1000)
            if closing:
                self.raw.write(closing)
            self.raw.close()

    def abort(self) -> None:
        self.stream.closed = True
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "websocket_subprotocol":
            return self.stream.subprotocol
        return self.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.raw.get_write_buffer_limits()

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        raise NotImplementedError("the WebSocket layer's protocol is fixed")

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.raw.get_protocol()


class WebSocketProtocol(asyncio.Protocol):
    """What the server creates per socket: unwraps frames for `inner`."""

    def __init__(
        self,
        inner: asyncio.Protocol,
        path: str = "/mqtt",
        max_message: int = 1024 * 1024,
        report: Callable[[str, str], None] | None = None,
    ) -> None:
        """`report(counter, why)`: a stream that ended for a reason other
        than a closing handshake (the acceptor counts it and logs it, rate
        limited); without it, a log line."""
        self.inner = inner
        self.report = report
        self.stream = WebSocketStream(path, max_message)
        self.raw: asyncio.Transport | None = None
        self.transport: WebSocketTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport
        raw = cast(asyncio.Transport, transport)
        self.raw = raw
        self.transport = WebSocketTransport(raw, self.stream)
        # from here the connection's own connect timeout runs: a client that
        # never finishes the upgrade is closed by it like one that never
        # sends CONNECT
        self.inner.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        self._take(self.stream.receive_data(data))

    def eof_received(self) -> bool | None:
        self._take(self.stream.receive_data(None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _take(self, out: Received) -> None:
        assert self.raw is not None
        if out.send and not self.raw.is_closing():
            self.raw.write(out.send)
        if out.mqtt:
            self.inner.data_received(out.mqtt)
        if out.closed and not self.raw.is_closing():
            if out.error:
                why = f"{self.raw.get_extra_info('peername')}: {out.error}"
                if self.report is not None:
                    self.report(out.counter or "websocket_errors", why)
                else:
                    log.info("%s", why)
            self.raw.close()
