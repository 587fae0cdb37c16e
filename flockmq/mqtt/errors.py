"""The codec's exceptions. Every failure to decode raises a ProtocolError that
carries the MQTT reason code to answer with and cites the spec rule it broke.
"""

from __future__ import annotations

from .reason_codes import ReasonCode


class MQTTError(Exception):
    """Root of every flockmq protocol-level error."""

    reason_code: ReasonCode = ReasonCode.UNSPECIFIED_ERROR


class ProtocolError(MQTTError):
    """Input that breaks the protocol. `reason_code` is what a v5 peer is told
    (CONNACK or DISCONNECT); a 3.1/3.1.1 peer has its connection closed."""

    # For an error inside a CONNECT, the protocol level that CONNECT asked for
    # (so a v5 client is told why with a CONNACK [MQTT-3.1.4-1]); else None.
    protocol_level: int | None = None

    def __init__(self, message: str, reason_code: ReasonCode = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MalformedPacket(ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ReasonCode.MALFORMED_PACKET)


class PacketTooLarge(ProtocolError):
    def __init__(self, message: str) -> None:
        super().__init__(message, ReasonCode.PACKET_TOO_LARGE)


class UnsupportedProtocolVersion(ProtocolError):
    """CONNECT with a known protocol name ("MQTT", "MQIsdp") and a level this
    server does not speak with it: answered with CONNACK 0x01 (3.1.1) / 0x84
    (v5) before closing [MQTT-3.1.2-2]. An unknown name is a plain
    ProtocolError: closed without a CONNACK [MQTT-3.1.2-1]."""

    def __init__(self, message: str, protocol_level: int = 4) -> None:
        super().__init__(message, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
        self.protocol_level = protocol_level
