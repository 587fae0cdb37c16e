"""flockmq/mqtt/topics.py, the one home of MQTT's topic rules: what the edge
checks (`parse_topic_filter`, `check_wildcards`) and what the router reads
without checking (`split_topic_filter`, `is_shared`, `is_dollar_topic`).
Matching itself is checked against a reference in tests/unit/router/."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flockmq.mqtt.errors import ProtocolError
from flockmq.mqtt.reason_codes import ReasonCode
from flockmq.mqtt.topics import (
    TopicFilter,
    check_wildcards,
    is_dollar_topic,
    is_shared,
    parse_topic_filter,
    split_topic_filter,
    topic_matches,
)

VALID = ["#", "+", "/", "a/+/b", "a/#", "$SYS/#", "$share/g/a/+", "$share/g/#", "$share/g//"]


@pytest.mark.parametrize("topic_filter", VALID)
def test_the_trusting_split_agrees_with_the_check_on_valid_filters(topic_filter: str) -> None:
    assert split_topic_filter(topic_filter) == parse_topic_filter(topic_filter)
    assert is_shared(topic_filter) == (parse_topic_filter(topic_filter).share_name is not None)


def test_share_is_parsed_only_at_protocol_level_5() -> None:
    assert parse_topic_filter("$share/g/a", 5) == TopicFilter("g", "a")
    assert parse_topic_filter("$share/g/a", 4) == TopicFilter(None, "$share/g/a")
    assert parse_topic_filter("$share/g", 4) == TopicFilter(None, "$share/g")


@given(st.text(alphabet="ab/+#$\x00", max_size=12))
def test_past_the_edge_nothing_raises(text: str) -> None:
    """A filter that reached the router unchecked gives a wrong answer at
    worst, never an exception that would cost the rest of its envelope."""
    split_topic_filter(text)
    is_shared(text)
    is_dollar_topic(text)
    topic_matches(text, "a/b")


@pytest.mark.parametrize(
    ("bad", "rule"),
    [("a/#/b", "[MQTT-4.7.1-1]"), ("a#", "[MQTT-4.7.1-1]"), ("a+", "[MQTT-4.7.1-2]")],
)
def test_check_wildcards_cites_the_mqtt5_rule(bad: str, rule: str) -> None:
    with pytest.raises(ProtocolError) as info:
        check_wildcards(bad)
    assert str(info.value).startswith(rule)
    assert info.value.reason_code == ReasonCode.TOPIC_FILTER_INVALID


def test_dollar_topics() -> None:
    assert is_dollar_topic("$SYS/x")
    assert is_dollar_topic("$")
    assert not is_dollar_topic("a/$SYS")
    assert not is_dollar_topic("")


def test_the_sys_tree_is_sys_and_below() -> None:
    from flockmq.mqtt.topics import is_sys_topic

    assert is_sys_topic("$SYS") and is_sys_topic("$SYS/broker/uptime")
    assert not is_sys_topic("$SYSTEM/x") and not is_sys_topic("sys/x") and not is_sys_topic("$")
