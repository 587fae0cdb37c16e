"""ACL in Mosquitto's format: parsing, anonymous/user/pattern rules, %c and %u,
deny precedence, and subscription filters granted only when fully covered."""

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
