"""The MQTT 5 property table (MQTT 5.0 section 2.2.2.2) and property encoding."""

from __future__ import annotations

import pytest

from flockmq.frontend.codec import PacketType
from flockmq.frontend.codec.properties import BY_ID, BY_NAME, PROPERTIES, WILL, encode_properties

# Identifier -> name, straight from the table in section 2.2.2.2.
SPEC_TABLE = {
    0x01: "payload_format_indicator",
    0x02: "message_expiry_interval",
    0x03: "content_type",
    0x08: "response_topic",
    0x09: "correlation_data",
    0x0B: "subscription_identifier",
    0x11: "session_expiry_interval",
    0x12: "assigned_client_identifier",
    0x13: "server_keep_alive",
    0x15: "authentication_method",
    0x16: "authentication_data",
    0x17: "request_problem_information",
    0x18: "will_delay_interval",
    0x19: "request_response_information",
    0x1A: "response_information",
    0x1C: "server_reference",
    0x1F: "reason_string",
    0x21: "receive_maximum",
    0x22: "topic_alias_maximum",
    0x23: "topic_alias",
    0x24: "maximum_qos",
    0x25: "retain_available",
    0x26: "user_property",
    0x27: "maximum_packet_size",
    0x28: "wildcard_subscription_available",
    0x29: "subscription_identifier_available",
    0x2A: "shared_subscription_available",
}


def test_table_matches_the_spec() -> None:
    assert {p.identifier: p.name for p in PROPERTIES} == SPEC_TABLE
    assert len(BY_ID) == len(BY_NAME) == 27


def test_only_user_property_and_publish_subscription_identifier_repeat() -> None:
    repeating = {(p.name, t) for p in PROPERTIES for t in p.repeatable_in}
    assert ("subscription_identifier", PacketType.PUBLISH) in repeating
    assert ("subscription_identifier", PacketType.SUBSCRIBE) not in repeating
    assert {name for name, _ in repeating} == {"user_property", "subscription_identifier"}
    assert WILL in BY_NAME["will_delay_interval"].packet_types


def test_encode_refuses_unknown_or_misplaced_properties() -> None:
    with pytest.raises(ValueError, match="unknown"):
        encode_properties({"no_such_property": 1}, PacketType.PUBLISH)
    with pytest.raises(ValueError, match="not allowed"):
        encode_properties({"session_expiry_interval": 1}, PacketType.PUBLISH)
    assert encode_properties({}, PacketType.PUBLISH) == b"\x00"
    assert encode_properties(None, PacketType.PUBLISH) == b"\x00"
