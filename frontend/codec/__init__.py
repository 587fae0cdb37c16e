"""Sans-IO MQTT codec for protocol levels 3 (3.1), 4 (3.1.1) and 5 (5.0).

Bytes in, typed packets out, and back. No asyncio, no sockets, no zmq here.
`StreamDecoder` / `decode` read packets of both directions; `encode`,
`encode_publish` and `encode_ack` write them. Every decoding failure raises a
ProtocolError carrying the reason code to answer with.
"""

from __future__ import annotations

from flockmq.mqtt.errors import (
    MalformedPacket,
    MQTTError,
    PacketTooLarge,
    ProtocolError,
    UnsupportedProtocolVersion,
)
from flockmq.mqtt.reason_codes import ConnackReturnCode, ReasonCode

from .decoder import DEFAULT_MAX_PACKET_SIZE, StreamDecoder, decode
from .encoder import encode, encode_ack, encode_publish
from .packets import (
    EMPTY_PROPERTIES,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Subscription,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "EMPTY_PROPERTIES",
    "Auth",
    "Connack",
    "ConnackReturnCode",
    "Connect",
    "Disconnect",
    "MQTTError",
    "MalformedPacket",
    "Packet",
    "PacketTooLarge",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Properties",
    "ProtocolError",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "StreamDecoder",
    "Suback",
    "Subscribe",
    "Subscription",
    "Unsuback",
    "Unsubscribe",
    "UnsupportedProtocolVersion",
    "Will",
    "decode",
    "encode",
    "encode_ack",
    "encode_publish",
]
