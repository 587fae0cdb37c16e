"""Access control in Mosquitto's ACL file format.

    # lines before any `user` line apply to anonymous clients
    topic read public/#
    user alice
    topic readwrite alice/#
    topic deny alice/secret
    pattern readwrite devices/%c/#     # every client; %c client id, %u username

Access is `read`, `write`, `readwrite` (the default when omitted) or `deny`.
With an ACL file, what no line grants is refused; a `deny` line that matches
wins over any grant. A subscription filter is allowed when every topic it can
match is covered by a granting line (so `a/#` grants `a/b/+`, but `a/+` does
not grant `a/#`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

READ = 1
WRITE = 2
ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}


class ACLError(Exception):
    pass


@dataclass
class ACL:
    anonymous: list[tuple[int, str]] = field(default_factory=list)
    users: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    patterns: list[tuple[int, str]] = field(default_factory=list)

    def _rules(self, client_id: str, username: str | None) -> list[tuple[int, str]]:
        rules = list(self.anonymous if username is None else self.users.get(username, []))
        for access, pattern in self.patterns:
            if username is None and "%u" in pattern:
                continue
            if "%c" in pattern and any(ch in client_id for ch in "+#/"):
                continue  # a client id must not widen a pattern
            rules.append((access, pattern.replace("%c", client_id).replace("%u", username or "")))
        return rules

    def can_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return self._allowed(client_id, username, topic, WRITE)

    def can_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        if topic_filter.startswith("$share/"):
            topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
        return self._allowed(client_id, username, topic_filter, READ)

    def _allowed(self, client_id: str, username: str | None, topic: str, want: int) -> bool:
        granted = False
        for access, pattern in self._rules(client_id, username):
            if access == 0:
                if overlaps(pattern, topic):
                    return False
            elif access & want and covers(pattern, topic):
                granted = True
        return granted


def covers(acl_filter: str, topic_filter: str) -> bool:
    """True if every topic matched by `topic_filter` is matched by `acl_filter`."""
    acl = acl_filter.split("/")
    sub = topic_filter.split("/")
    for i, level in enumerate(acl):
        if level == "#":
            return not (i == 0 and sub[0].startswith("$"))
        if i >= len(sub):
            return False
        if level == "+":
            if sub[i] == "#" or (i == 0 and sub[0].startswith("$")):
                return False
            continue
        if level != sub[i]:
            return False
    return len(acl) == len(sub)


def overlaps(acl_filter: str, topic_filter: str) -> bool:
    """True if some topic is matched by both filters (a deny line applies)."""
    a = acl_filter.split("/")
    b = topic_filter.split("/")
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else None
        y = b[i] if i < len(b) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and x != "+" and y != "+":
            return False
    return True


def load_acl(path: str) -> ACL:
    acl = ACL()
    current: list[tuple[int, str]] = acl.anonymous
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keyword, _, rest = line.partition(" ")
            rest = rest.strip()
            if keyword == "user":
                if not rest:
                    raise ACLError(f"{path}:{lineno}: `user` needs a name")
                current = acl.users.setdefault(rest, [])
            elif keyword in ("topic", "pattern"):
                first, _, remainder = rest.partition(" ")
                if first in ACCESS:
                    access, topic = ACCESS[first], remainder.strip()
                else:
                    access, topic = READ | WRITE, rest
                if not topic:
                    raise ACLError(f"{path}:{lineno}: `{keyword}` needs a topic")
                (current if keyword == "topic" else acl.patterns).append((access, topic))
            else:
                raise ACLError(f"{path}:{lineno}: unknown keyword {keyword!r}")
    return acl
