"""ACL in Mosquitto's format: parsing, anonymous/user/pattern rules, %c and %u
(substituted in one pass, never widened by what a client chose as its id or
username), deny precedence, and subscription filters granted only when fully
covered."""

from __future__ import annotations

from pathlib import Path

import pytest

from frontend.acl import ACL, READ, WRITE, ACLError, covers, load_acl, overlaps

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
    assert not acl.can_subscribe("dev1", None, "devices/+/state")
    # the pattern's deny line wins over its readwrite line
    assert not acl.can_publish("dev1", None, "devices/dev1/locked")
    assert not acl.can_subscribe("dev1", None, "devices/dev1/#")  # overlaps the deny


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


def test_subscription_needs_full_coverage(acl: ACL) -> None:
    assert acl.can_subscribe("c", "alice", "alice/pub/+")
    assert acl.can_subscribe("c", "alice", "alice/pub/#")
    # a grant that covers it does not help when some matched topic is denied
    assert not acl.can_subscribe("c", "alice", "alice/+/x")
    assert not acl.can_subscribe("c", "alice", "alice/#")
    assert not acl.can_subscribe("c", "alice", "alice/secret/+")  # overlaps the deny
    assert not acl.can_subscribe("c", "alice", "sensors/#")  # wider than sensors/+/temp
    assert acl.can_subscribe("c", "alice", "sensors/+/temp")
    assert not acl.can_subscribe("c", "alice", "#")


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


def test_rules_are_shared_between_clients_with_the_same_lines(acl: ACL) -> None:
    dev1 = acl.rules_for("dev1", "bob")
    assert acl.rules_for("dev1", "bob") is dev1
    assert acl.rules_for("dev2", "bob") is not dev1  # devices/%c/# differs
