"""MQTT over WebSocket (issue 11), sans-IO over wsproto.

`WebSocketStream` sits between a transport and the MQTT decoder: bytes from the
socket go in (`receive_data`), and out come the MQTT bytes they carried plus
the bytes to write back (the handshake's answer, pongs, the closing
handshake). MQTT bytes to the client go through `send` (one binary message
each). The MQTT decoder is a stream, so a packet split across frames, or
several packets in one frame, need nothing here.

Rules, from MQTT 5.0 section 6 and RFC 6455 (the framing is wsproto's):
- the HTTP upgrade must ask for `path` (or `/`) and offer the `mqtt`
  subprotocol (`mqttv3.1` too, for old clients); anything else is refused
  with an HTTP error and the connection closes;
- MQTT travels in binary messages: a text message closes the connection with
  1003 (unsupported data) [MQTT-6.0.0-1];
- a message over `max_message` bytes closes it with 1009 (message too big);
- pings are answered; a close is answered and ends the stream.
Bounded: wsproto keeps at most a frame header and the upgrade request (h11
caps it at 16 KiB) before it hands data on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

SUBPROTOCOLS = ("mqtt", "mqttv3.1")


@dataclass(slots=True)
class Received:
    """What one `receive_data` produced."""

    mqtt: bytes = b""  # MQTT bytes for the decoder
    send: bytes = b""  # bytes to write to the socket
    closed: bool = False  # the stream has ended: write `send`, then close
    error: str | None = None  # why it ended, if not a normal close
    counter: str | None = None  # the acceptor's counter for that reason


class WebSocketStream:
    def __init__(self, path: str = "/mqtt", max_message: int = 1024 * 1024) -> None:
        self.paths = {path, "/"}
        self.max_message = max_message
        self.open = False  # the upgrade was accepted
        self.closed = False
        self.subprotocol: str | None = None
        self._ws = WSConnection(ConnectionType.SERVER)
        self._message_bytes = 0  # of the message being received

    def receive_data(self, data: bytes | None) -> Received:
        """Bytes from the socket (None: it reached EOF)."""
        out = Received()
        if self.closed:
            return out
        try:
            self._ws.receive_data(data)
            self._handle_events(out)
        except RemoteProtocolError as exc:
            self._fail(out, f"WebSocket protocol error: {exc}", "websocket_protocol_errors")
        if data is None and not self.closed:
            self._fail(
                out,
                "the client closed the socket without a closing handshake",
                "websocket_closed_without_handshake",
            )
        return out

    def send(self, mqtt: bytes) -> bytes:
        """`mqtt` as one binary message (b"" once the stream is closed)."""
        if self.closed or not self.open:
            return b""
        return self._ws.send(BytesMessage(mqtt))

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """The closing handshake's first frame (b"" if there is nothing to close)."""
        if self.closed or not self.open:
            self.closed = True
            return b""
        self.closed = True
        return self._ws.send(CloseConnection(code=code, reason=reason))

    # --- events -----------------------------------------------------------
    def _handle_events(self, out: Received) -> None:
        chunks: list[bytes] = []
        for event in self._ws.events():
            if isinstance(event, Request):
                self._upgrade(event, out)
            elif isinstance(event, BytesMessage):
                self._message_bytes += len(event.data)
                if self._message_bytes > self.max_message:
                    self._close(
                        out,
                        CloseReason.MESSAGE_TOO_BIG,
                        f"message over {self.max_message} bytes",
                        "websocket_messages_too_big",
                    )
                    break
                chunks.append(bytes(event.data))
                if event.message_finished:
                    self._message_bytes = 0
            elif isinstance(event, TextMessage):
                self._close(
                    out,
                    CloseReason.UNSUPPORTED_DATA,
                    "MQTT needs binary frames",
                    "websocket_text_messages",
                )
                break
            elif isinstance(event, Ping):
                out.send += self._ws.send(event.response())
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError):  # not after EOF (1006)
                    out.send += self._ws.send(event.response())
                self.closed = out.closed = True
                break
            if self.closed:
                break
        out.mqtt = b"".join(chunks)

    def _upgrade(self, request: Request, out: Received) -> None:
        path = request.target.split("?", 1)[0]
        offered = [p for p in SUBPROTOCOLS if p in request.subprotocols]
        if path not in self.paths or not offered:
            why = f"path {path!r} not served" if path not in self.paths else "no mqtt subprotocol"
            out.send += self._ws.send(RejectConnection(status_code=404 if offered else 400))
            self.closed = out.closed = True
            out.error = f"WebSocket upgrade refused: {why}"
            out.counter = "websocket_upgrades_refused"
            return
        self.subprotocol = offered[0]
        out.send += self._ws.send(AcceptConnection(subprotocol=self.subprotocol))
        self.open = True

    def _close(self, out: Received, code: int, why: str, counter: str) -> None:
        out.send += self._ws.send(CloseConnection(code=code, reason=why))
        self.closed = out.closed = True
        out.error = why
        out.counter = counter
        out.counter = counter

    def _fail(self, out: Received, why: str, counter: str) -> None:
        with contextlib.suppress(LocalProtocolError):  # wsproto already considers it closed
            if self.open and not self.closed:
                reason = why[:120]
                out.send += self._ws.send(CloseConnection(CloseReason.PROTOCOL_ERROR, reason))
            elif not self.closed:  # an upgrade request it could not parse
                out.send += self._ws.send(RejectConnection(status_code=400))
        self.closed = out.closed = True
        out.error = why
        out.counter = counter
