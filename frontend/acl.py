"""Access control in Mosquitto's ACL file format, with Mosquitto's semantics.

    # lines before any `user` line apply to anonymous clients
    topic read public/#
    user alice
    topic readwrite alice/#
    topic deny alice/secret
    pattern readwrite devices/%c/#     # every client; %c client id, %u username

Access is `read`, `write`, `readwrite` (the default when omitted) or `deny`.
Which lines apply to a client: with a username, the lines after `user <name>`
(none if the file has no such section), without one the lines before any
`user` line; and to every client the `pattern` lines, with `%c` and `%u`
substituted (src/security_default.c, mosquitto_acl_check_default).

What they mean, decided per topic (one message's topic, a publish's topic):
- what no line grants is refused; a `deny` line that matches wins over every
  grant (Mosquitto puts deny lines first: "Any deny topics are handled before
  topics that grant read/write access", mosquitto.conf(5)). Here a deny line
  wins over all grants, also a `pattern deny` over a `user` grant, where
  Mosquitto would let the user's section decide before the patterns: stricter
  in that one corner, and what this file format meant in flockmq before.
- `+` and `#` in a line match as in subscriptions, and a line whose first level
  is a wildcard matches no `$` topic (`#` does not grant `$SYS/...`).
- READ is checked for every message when it is delivered, retained ones
  included (Mosquitto: subs__send and retain__process check MOSQ_ACL_READ);
  WRITE for every publish and for the will at CONNECT.

Subscriptions: Mosquitto's acl_file grants every SUBSCRIBE (its check returns
success for MOSQ_ACL_SUBSCRIBE, "FIXME - implement ACL subscription strings")
and relies on the READ check at delivery. flockmq does the same, except that a
filter that can match no readable topic at all (no read grant overlaps it, or
every overlap lies inside one deny line) gets 0x80 / 0x87, so a client learns
at once that it will receive nothing. `#` with `topic readwrite #` and
`topic deny x` is granted, and x is filtered out of it message by message.

Patterns are substituted in one pass (`%c` inside a client id is not expanded
again as `%u`). A client id or username containing `+`, `#`, `/` or `%`, or
starting the first level with `$`, must never widen what a pattern grants: a
granting pattern line that would substitute such a value does not apply to
that client. A `pattern deny` line substitutes the value as literal text (its
`+` and `#` are not wildcards), which denies exactly the topic it names.

Rules are compiled once per client (`ACL.rules_for`) and shared between
clients with the same lines; `DecisionCache` keeps per-(rules, topic)
decisions for the delivery path, bounded in bytes.
"""

from __future__ import annotations

import re
import sys
import weakref
from dataclasses import dataclass, field
from typing import NamedTuple

from flockmq.mqtt.errors import ProtocolError
from flockmq.mqtt.topics import check_wildcards, is_dollar_topic, split_topic_filter

READ = 1
WRITE = 2
ACCESS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": 0}
# Characters that let a substituted client id or username reach beyond its own
# level (wildcards, a level separator) or look like another placeholder.
UNSAFE_IN_PATTERN = frozenset("+#/%")
_PLACEHOLDER = re.compile(r"%[cu]")


class ACLError(Exception):
    pass


class Filter(NamedTuple):
    """A compiled topic filter: `levels` hold a literal level or None for `+`;
    `multi` is a trailing `#` (which also matches the parent level)."""

    levels: tuple[str | None, ...]
    multi: bool


def parse_filter(text: str) -> Filter:
    """`text` is a valid filter (the codec checked it, or `load_acl` did):
    compiled, not checked again."""
    parts = text.split("/")
    multi = parts[-1] == "#"
    if multi:
        parts.pop()
    return Filter(tuple(None if p == "+" else p for p in parts), multi)


def _first_is_wildcard(f: Filter) -> bool:
    return not f.levels or f.levels[0] is None


def matches(f: Filter, topic: list[str]) -> bool:
    """Does `f` match the topic, given as its levels?"""
    levels = f.levels
    n = len(levels)
    if (n > len(topic)) or (n < len(topic) and not f.multi):
        return False
    if is_dollar_topic(topic[0]) and _first_is_wildcard(f):
        return False  # [MQTT-4.7.2-1] wildcards at the first level skip $-topics
    # zip stops at the filter's last level: under `#` the rest matches.
    return all(want is None or want == got for want, got in zip(levels, topic, strict=False))


def filter_covers(outer: Filter, inner: Filter) -> bool:
    """True if every topic matched by `inner` is matched by `outer`."""
    if _first_is_wildcard(outer) and inner.levels and is_dollar_topic(inner.levels[0] or ""):
        return False  # [MQTT-4.7.2-1]
    if len(inner.levels) < len(outer.levels):
        return False
    pairs = zip(outer.levels, inner.levels, strict=False)
    if not all(want is None or want == got for want, got in pairs):
        return False
    if outer.multi:
        return True
    return len(inner.levels) == len(outer.levels) and not inner.multi


def intersect(a: Filter, b: Filter) -> Filter | None:
    """The filter matching exactly the topics both match, or None if none."""
    na, nb = len(a.levels), len(b.levels)
    if a.multi and b.multi:
        n, multi = max(na, nb), True
    elif a.multi or b.multi:
        # The one without `#` fixes the length; the other must not need more.
        fixed, other = (nb, na) if a.multi else (na, nb)
        if fixed < other:
            return None
        n, multi = fixed, False
    elif na != nb:
        return None
    else:
        n, multi = na, False
    out: list[str | None] = []
    for i in range(n):
        x = a.levels[i] if i < na else None
        y = b.levels[i] if i < nb else None
        if x is None:
            out.append(y)
        elif y is None or x == y:
            out.append(x)
        else:
            return None
    if (
        out
        and out[0] is not None
        and is_dollar_topic(out[0])
        and (_first_is_wildcard(a) or _first_is_wildcard(b))
    ):
        return None  # [MQTT-4.7.2-1]
    return Filter(tuple(out), multi)


def covers(acl_filter: str, topic_filter: str) -> bool:
    """True if every topic matched by `topic_filter` is matched by `acl_filter`."""
    return filter_covers(parse_filter(acl_filter), parse_filter(topic_filter))


def overlaps(acl_filter: str, topic_filter: str) -> bool:
    """True if some topic is matched by both filters."""
    return intersect(parse_filter(acl_filter), parse_filter(topic_filter)) is not None


class ClientRules:
    """What one client may do: the lines that apply to it, compiled, with its
    patterns substituted. Interned by `ACL.rules_for`, so clients with the same
    lines share one object (and the decisions cached for it)."""

    __slots__ = ("__weakref__", "denies", "grants")

    def __init__(self, denies: tuple[Filter, ...], grants: tuple[tuple[int, Filter], ...]) -> None:
        self.denies = denies
        self.grants = grants

    def access(self, topic: str) -> int:
        """READ | WRITE as granted for this topic; 0 when a deny line matches."""
        levels = topic.split("/")
        for deny in self.denies:
            if matches(deny, levels):
                return 0
        allowed = 0
        for access, grant in self.grants:
            if access & ~allowed and matches(grant, levels):
                allowed |= access
        return allowed

    def can_publish(self, topic: str) -> bool:
        return bool(self.access(topic) & WRITE)

    def can_read(self, topic: str) -> bool:
        return bool(self.access(topic) & READ)

    def can_subscribe(self, topic_filter: str) -> bool:
        """Granted unless no topic the filter can match is readable (see the
        module docstring). A shared subscription is checked on its filter."""
        topic_filter = split_topic_filter(topic_filter).filter
        if not topic_filter:
            return False
        wanted = parse_filter(topic_filter)
        for access, grant in self.grants:
            if not access & READ:
                continue
            common = intersect(grant, wanted)
            if common is not None and not any(filter_covers(d, common) for d in self.denies):
                return True
        return False


@dataclass
class ACL:
    anonymous: list[tuple[int, str]] = field(default_factory=list)
    users: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    patterns: list[tuple[int, str]] = field(default_factory=list)
    _interned: weakref.WeakValueDictionary[
        tuple[tuple[Filter, ...], tuple[tuple[int, Filter], ...]], ClientRules
    ] = field(default_factory=weakref.WeakValueDictionary, repr=False, compare=False)

    def rules_for(self, client_id: str, username: str | None) -> ClientRules:
        section = self.anonymous if username is None else self.users.get(username, [])
        lines: list[tuple[int, _Line]] = list(section)
        for access, pattern in self.patterns:
            line = substitute(pattern, client_id, username, literal=access == 0)
            if line is not None:
                lines.append((access, line))
        compiled = _compile(lines)
        denies = tuple(f for access, f in compiled if access == 0)
        grants = tuple((access, f) for access, f in compiled if access != 0)
        key = (denies, grants)
        rules = self._interned.get(key)
        if rules is None:
            rules = self._interned[key] = ClientRules(denies, grants)
        return rules

    # Convenience for one-off checks (tests, tools); connections keep their rules.
    def can_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return self.rules_for(client_id, username).can_publish(topic)

    def can_read(self, client_id: str, username: str | None, topic: str) -> bool:
        return self.rules_for(client_id, username).can_read(topic)

    def can_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        return self.rules_for(client_id, username).can_subscribe(topic_filter)


# A pattern line substituted for one client: the filter text, or (for a deny
# line) the compiled filter whose substituted levels are literal.
_Line = str | Filter


def substitute(
    pattern: str, client_id: str, username: str | None, *, literal: bool
) -> _Line | None:
    """`pattern` with %c and %u replaced in one pass, or None when the line does
    not apply to this client (see the module docstring)."""
    used = set(_PLACEHOLDER.findall(pattern))
    if "%u" in used and username is None:
        return None  # Mosquitto: a %u line does not apply to anonymous clients
    values = {"%c": client_id, "%u": username or ""}
    if literal:
        return _substitute_literally(pattern, values)
    for placeholder in used:
        value = values[placeholder]
        if UNSAFE_IN_PATTERN.intersection(value):
            return None
        if is_dollar_topic(value) and pattern.startswith(placeholder):
            return None  # would reach into $SYS and other $-topics [MQTT-4.7.2-1]
    return _PLACEHOLDER.sub(lambda m: values[m.group()], pattern)


def _substitute_literally(pattern: str, values: dict[str, str]) -> Filter:
    """A deny line: only the pattern's own `+`/`#` levels are wildcards; what a
    value brings (even `+`, `#` or `/`) is literal text."""
    parsed = parse_filter(pattern)
    levels: list[str | None] = []
    for level in parsed.levels:
        if level is None or "%" not in level:
            levels.append(level)
        else:
            levels.extend(_PLACEHOLDER.sub(lambda m: values[m.group()], level).split("/"))
    return Filter(tuple(levels), parsed.multi)


def _compile(lines: list[tuple[int, _Line]]) -> list[tuple[int, Filter]]:
    return [(access, parse_filter(t) if isinstance(t, str) else t) for access, t in lines]


# What one cached decision costs besides its topic: the key tuple, the dict slot.
DECISION_OVERHEAD = 120


class DecisionCache:
    """Access decisions per (rules, topic) for the hot paths (every delivery,
    every publish), bounded in bytes: when full it is emptied and refilled,
    which costs only the checks again. Counts its clears."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.clears = 0
        self._bytes = 0
        self._decisions: dict[tuple[ClientRules, str], int] = {}

    def access(self, rules: ClientRules | None, topic: str) -> int:
        """A connection without rules (not yet connected) gets nothing."""
        if rules is None:
            return 0
        key = (rules, topic)
        allowed = self._decisions.get(key)
        if allowed is None:
            allowed = rules.access(topic)
            cost = sys.getsizeof(topic) + DECISION_OVERHEAD
            if self._bytes + cost > self.max_bytes:
                self._decisions.clear()
                self._bytes = 0
                self.clears += 1
            self._decisions[key] = allowed
            self._bytes += cost
        return allowed

    @property
    def size_bytes(self) -> int:
        return self._bytes


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
                # Mosquitto ignores a malformed filter (it never matches); a
                # line that cannot mean anything is refused here instead.
                try:
                    check_wildcards(topic)
                except ProtocolError as exc:
                    raise ACLError(f"{path}:{lineno}: {exc}") from None
                (current if keyword == "topic" else acl.patterns).append((access, topic))
            else:
                raise ACLError(f"{path}:{lineno}: unknown keyword {keyword!r}")
    return acl
