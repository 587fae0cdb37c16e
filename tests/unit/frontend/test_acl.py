"""ACL in Mosquitto's format: parsing, anonymous/user/pattern rules, %c and %u
(substituted in one pass, never widened by what a client chose as its id or
username), deny precedence, Mosquitto's semantics for subscriptions (granted
unless no readable topic can match; messages filtered per topic on delivery),
and the bounded decision cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from flockmq.config import Config, ConfigError
from flockmq.frontend.acl import (
    ACL,
    READ,
    WRITE,
    ACLError,
    DecisionCache,
    covers,
    load_acl,
    overlaps,
)

ACL_TEXT = """\
# anonymous clients
topic read public/#
topic write inbox/anon

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic sensors/+/temp
topic write cmd/alice

user bob
topic read alice/shared/#

pattern readwrite devices/%c/#
pattern read users/%u/#
pattern deny devices/%c/locked
"""


@pytest.fixture
def acl(tmp_path: Path) -> ACL:
    path = tmp_path / "acl"
    path.write_text(ACL_TEXT)
    return load_acl(str(path))


def test_parsing(acl: ACL) -> None:
    assert acl.anonymous == [(READ, "public/#"), (WRITE, "inbox/anon")]
    assert acl.users["alice"] == [
        (READ | WRITE, "alice/#"),
        (0, "alice/secret/#"),
        (READ | WRITE, "sensors/+/temp"),  # access omitted: readwrite
        (WRITE, "cmd/alice"),
    ]
    assert acl.users["bob"] == [(READ, "alice/shared/#")]
    assert acl.patterns == [
        (READ | WRITE, "devices/%c/#"),
        (READ, "users/%u/#"),
        (0, "devices/%c/locked"),
    ]


@pytest.mark.parametrize(
    "text",
    ["user\n", "topic read\n", "pattern\n", "bogus a/b\n", "topic\n"],
)
def test_parse_errors_name_the_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad"
    path.write_text("# ok\n" + text)
    with pytest.raises(ACLError, match=r":2: "):
        load_acl(str(path))


@pytest.mark.parametrize(
    ("username", "topic", "publish", "subscribe"),
    [
        (None, "public/news", False, True),
        (None, "inbox/anon", True, False),
        (None, "alice/x", False, False),
        ("alice", "alice/x", True, True),
        ("alice", "alice/secret/plans", False, False),  # deny wins over alice/#
        ("alice", "alice/secret", False, False),  # '#' also matches the parent level
        ("alice", "sensors/kitchen/temp", True, True),
        ("alice", "sensors/kitchen/hum", False, False),
        ("alice", "cmd/alice", True, False),
        ("alice", "public/news", False, False),  # anonymous lines are for anonymous clients
        ("bob", "alice/shared/doc", False, True),
        ("bob", "alice/x", False, False),
        ("carol", "anything", False, False),  # a user with no lines gets nothing but patterns
    ],
)
def test_topic_decisions(
    acl: ACL, username: str | None, topic: str, publish: bool, subscribe: bool
) -> None:
    assert acl.can_publish("cid", username, topic) is publish
    assert acl.can_subscribe("cid", username, topic) is subscribe


def test_client_id_pattern(acl: ACL) -> None:
    assert acl.can_publish("dev1", None, "devices/dev1/state")
    assert acl.can_subscribe("dev1", "alice", "devices/dev1/+/x")
    assert not acl.can_publish("dev1", None, "devices/dev2/state")
    # Granted (Mosquitto grants it): devices/dev1/state is readable; the other
    # devices' messages are filtered out on delivery.
    assert acl.can_subscribe("dev1", None, "devices/+/state")
    assert acl.can_read("dev1", None, "devices/dev1/state")
    assert not acl.can_read("dev1", None, "devices/dev2/state")
    # the pattern's deny line wins over its readwrite line
    assert not acl.can_publish("dev1", None, "devices/dev1/locked")
    assert not acl.can_read("dev1", None, "devices/dev1/locked")
    assert acl.can_subscribe("dev1", None, "devices/dev1/#")  # the deny is filtered per message
    assert not acl.can_subscribe("dev1", None, "devices/dev1/locked")  # nothing else to match


def test_username_pattern(acl: ACL) -> None:
    assert acl.can_subscribe("x", "bob", "users/bob/inbox")
    assert not acl.can_publish("x", "bob", "users/bob/inbox")  # read only
    assert not acl.can_subscribe("x", "bob", "users/alice/inbox")
    assert not acl.can_subscribe("x", None, "users//inbox")  # %u needs a username


@pytest.mark.parametrize("client_id", ["a/b", "+", "#", "dev/+"])
def test_client_id_with_wildcards_or_slash_does_not_widen_a_pattern(
    acl: ACL, client_id: str
) -> None:
    assert not acl.can_subscribe(client_id, None, f"devices/{client_id}/x")
    assert not acl.can_publish(client_id, None, f"devices/{client_id}/x")


def test_subscription_granted_when_some_matched_topic_is_readable(acl: ACL) -> None:
    """Mosquitto grants a filter wider than the grants or overlapping a deny
    line, and filters each message on delivery; only a filter that can match
    no readable topic is refused."""
    assert acl.can_subscribe("c", "alice", "alice/pub/+")
    assert acl.can_subscribe("c", "alice", "alice/pub/#")
    assert acl.can_subscribe("c", "alice", "alice/+/x")  # alice/secret/x is filtered out
    assert acl.can_subscribe("c", "alice", "alice/#")
    assert not acl.can_subscribe("c", "alice", "alice/secret/+")  # only denied topics
    assert not acl.can_subscribe("c", "alice", "alice/secret/#")
    assert acl.can_subscribe("c", "alice", "sensors/#")  # sensors/+/temp is in it
    assert acl.can_subscribe("c", "alice", "sensors/+/temp")
    assert acl.can_subscribe("c", "alice", "#")
    assert not acl.can_subscribe("c", "alice", "cmd/#")  # write only
    assert not acl.can_subscribe("c", "alice", "$SYS/#")  # '#' grants no $-topic
    assert not acl.can_subscribe("c", None, "alice/#")  # no anonymous line reaches it


def test_shared_subscription_is_checked_on_its_real_filter(acl: ACL) -> None:
    assert acl.can_subscribe("c", "alice", "$share/g/alice/x")
    assert not acl.can_subscribe("c", "alice", "$share/g/alice/secret/x")
    assert not acl.can_subscribe("c", "alice", "$share/g")


@pytest.mark.parametrize(
    ("acl_filter", "topic_filter", "expected"),
    [
        ("a/#", "a/b/+", True),
        ("a/#", "a", True),
        ("a/+", "a/#", False),
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),
        ("a/+", "a/b/c", False),
        ("+/b", "$x/b", False),
        ("#", "$SYS/x", False),
        ("#", "a/b", True),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
    ],
)
def test_covers(acl_filter: str, topic_filter: str, expected: bool) -> None:
    assert covers(acl_filter, topic_filter) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("a/secret/#", "a/#", True),
        ("a/secret/#", "a/+/x", True),
        ("a/secret", "a/other", False),
        ("a/+", "a/b/c", False),
        ("a/b", "a", False),
        ("#", "anything/at/all", True),
    ],
)
def test_overlaps(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


# --- Mosquitto's semantics with its standard test file ---------------------------

STANDARD = """\
topic readwrite #
topic deny test/nosubscribe
"""


@pytest.fixture
def standard(tmp_path: Path) -> ACL:
    path = tmp_path / "standard"
    path.write_text(STANDARD)
    return load_acl(str(path))


@pytest.mark.parametrize("topic_filter", ["#", "+/+", "test/#", "test/+", "test/nosubscribe/#"])
def test_standard_file_grants_filters_that_overlap_a_deny(standard: ACL, topic_filter: str) -> None:
    assert standard.can_subscribe("c", None, topic_filter)


def test_standard_file_filters_per_message_what_it_grants(standard: ACL) -> None:
    """An anonymous client gets `#`; each message is then checked for READ."""
    assert standard.can_subscribe("c", None, "#")
    assert not standard.can_read("c", None, "test/nosubscribe")
    assert not standard.can_publish("c", None, "test/nosubscribe")
    assert standard.can_read("c", None, "test/nosubscribe/below")  # the deny line is exact
    assert standard.can_read("c", None, "test/other")
    assert standard.can_read("c", None, "/leading/slash")
    # wildcards at the first level skip $-topics, in ACL lines as in subscriptions
    assert not standard.can_read("c", None, "$SYS/broker/uptime")
    assert not standard.can_subscribe("c", None, "$SYS/#")
    # a filter that can match only denied topics is refused
    assert not standard.can_subscribe("c", None, "test/nosubscribe")
    # the lines before any `user` line are for anonymous clients; a username
    # without a section of its own gets the patterns only (none here)
    assert not standard.can_subscribe("c", "bob", "#")
    assert not standard.can_read("c", "bob", "test/other")


def test_deny_inside_a_grant_refuses_only_the_covered_part(tmp_path: Path) -> None:
    path = tmp_path / "acl"
    path.write_text("topic read a/#\ntopic read b/+\ntopic deny a/x/#\ntopic deny b/+\n")
    acl = load_acl(str(path))
    assert not acl.can_subscribe("c", None, "+/x/y")  # a/x/y is denied, nothing else grants
    assert acl.can_subscribe("c", None, "+/y/z")  # a/y/z is readable
    assert acl.can_subscribe("c", None, "a/+")
    assert not acl.can_subscribe("c", None, "a/x/+")
    assert not acl.can_subscribe("c", None, "b/#")  # b/+ is all denied, b/# grants nothing more
    assert not acl.can_read("c", None, "b/q")


# --- pattern injection ------------------------------------------------------------

INJECTION = """\
user bob
topic readwrite chat/#

pattern readwrite devices/%c/#
pattern read users/%u/#
pattern deny chat/%u/%c
pattern readwrite %c/#
"""


@pytest.fixture
def patterns(tmp_path: Path) -> ACL:
    path = tmp_path / "patterns"
    path.write_text(INJECTION)
    return load_acl(str(path))


def test_client_id_percent_u_with_username_hash_reaches_nothing(patterns: ACL) -> None:
    """%c then %u in the result turned devices/%c/# into devices/#/#."""
    acl = patterns
    assert not acl.can_subscribe("%u", "#", "devices/victim/#")
    assert not acl.can_subscribe("%u", "#", "devices/#")
    assert not acl.can_read("%u", "#", "devices/victim/secret")
    assert not acl.can_publish("%u", "#", "devices/victim/cmd")
    assert not acl.can_read("%u", "#", "users/victim/inbox")


def test_substitution_is_one_pass(patterns: ACL) -> None:
    """A %u inside the client id is text, not a second placeholder: the deny
    line names chat/bob/%u for client id `%u`, not chat/bob/bob."""
    assert not patterns.can_publish("%u", "bob", "chat/bob/%u")
    assert patterns.can_publish("%u", "bob", "chat/bob/bob")
    assert not patterns.can_publish("bob", "bob", "chat/bob/bob")


@pytest.mark.parametrize("value", ["%u", "%c", "50%"])
def test_client_id_with_percent_does_not_widen_a_pattern(patterns: ACL, value: str) -> None:
    """Client ids with `+`, `#` or `/` were already kept out of %c (see
    test_client_id_with_wildcards_or_slash_does_not_widen_a_pattern); `%` was
    not: `%u` became the username, and the line applies to no such client now,
    not even to its literal text."""
    acl = patterns
    assert not acl.can_read(value, "other", "devices/other/x")
    assert not acl.can_subscribe(value, "other", "devices/other/#")
    assert not acl.can_publish(value, "other", f"devices/{value}/x")
    assert not acl.can_read(value, "other", f"{value}/x")  # the `%c/#` line


@pytest.mark.parametrize("value", ["+", "#", "a/b", "dev/+", "a/#", "%c", "%u", "50%"])
def test_unsafe_username_does_not_widen_a_pattern(patterns: ACL, value: str) -> None:
    acl = patterns
    assert not acl.can_subscribe("cid", value, "users/+/inbox")
    assert not acl.can_subscribe("cid", value, "users/#")
    assert not acl.can_read("cid", value, "users/other/inbox")
    assert not acl.can_read("cid", value, f"users/{value}/inbox")
    assert acl.can_read("cid", value, "devices/cid/x")  # its own %c lines still apply


def test_client_id_cannot_reach_dollar_topics_through_a_pattern(patterns: ACL) -> None:
    assert not patterns.can_read("$SYS", None, "$SYS/broker/uptime")
    assert not patterns.can_subscribe("$SYS", None, "$SYS/#")
    assert patterns.can_read("dev", None, "dev/x")


def test_deny_pattern_takes_an_unsafe_value_literally(patterns: ACL) -> None:
    """Dropping a deny line would widen access: it applies, naming exactly the
    topic it names for this client, with the value's characters as text."""
    assert not patterns.can_publish("a/b", "bob", "chat/bob/a/b")
    assert patterns.can_publish("a/b", "bob", "chat/bob/a")
    assert patterns.can_publish("+", "bob", "chat/bob/x")  # '+' is not a wildcard here
    assert patterns.can_subscribe("+", "bob", "chat/bob/+")


# --- compiled rules and the decision cache --------------------------------------


def test_rules_are_shared_between_clients_with_the_same_lines(acl: ACL, standard: ACL) -> None:
    """So decisions cached for one serve them all."""
    anonymous = standard.rules_for("a", None)
    assert standard.rules_for("b", None) is anonymous
    dev1 = acl.rules_for("dev1", None)
    assert acl.rules_for("dev1", None) is dev1
    assert acl.rules_for("dev2", None) is not dev1  # devices/%c/# differs


def test_decision_cache_is_bounded_in_bytes(acl: ACL) -> None:
    cache = DecisionCache(max_bytes=4096)
    rules = acl.rules_for("c", "alice")
    for i in range(1000):
        assert cache.access(rules, f"alice/{i}") == READ | WRITE
        assert cache.size_bytes <= 4096
    assert cache.clears > 0
    assert cache.access(rules, "alice/secret/x") == 0
    assert cache.access(rules, "sensors/k/temp") == READ | WRITE
    assert cache.access(None, "alice/x") == 0  # no rules: nothing


@pytest.mark.parametrize("line", ["topic read a/#/b", "topic a+/b", "pattern read x/#%c"])
def test_malformed_filters_are_refused_with_their_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad"
    path.write_text("topic read ok/#\n" + line + "\n")
    with pytest.raises(ACLError, match=r":2: "):
        load_acl(str(path))


def test_a_bad_acl_file_stops_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    path.write_text("topic read a/#/b\n")
    with pytest.raises(ConfigError, match=r"acl_file: .*:1: "):
        Config(acl_file=str(path), acceptors=1, workers=1).resolved()
