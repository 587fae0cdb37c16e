"""Sans-IO MQTT codec for protocol levels 3 (3.1), 4 (3.1.1) and 5 (5.0).

Bytes in, typed packets out, and back. No asyncio, no sockets, no zmq here.
"""

from .errors import MalformedPacket, MQTTError, PacketTooLarge, ProtocolError
from .packets import *  # noqa: F403
from .reason_codes import ConnackReturnCode, ReasonCode

__all__ = [
    "ConnackReturnCode",
    "MQTTError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "ReasonCode",
]
