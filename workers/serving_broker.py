"""Which broker serves the shards of a namespace (sans-IO): all of them are
served by ONE broker at a time, the others stand by (workers/ownership.py).

Why: brokers do not route messages to each other yet (issue 14's routing is
a later step). Were shard 0 served by broker A and shard 1 by broker B, a
publish on A would reach only the sessions of A's shards, and a persistent
session on B would miss it. So a worker takes its shard's lock only when no
other broker holds any shard of the namespace (`may_take`), and a broker
that finds itself sharing the shards with another (two brokers started at
the same instant, a race with a worker's restart) gives way by a rule every
broker computes alike (`must_yield`): the broker holding more shards stays,
and of two holding as many, the one whose id sorts last.

A broker's id is in the application_name of every lock connection of its
workers ("flockmq shards ID worker N", store/shard_locks.py), so the holders
PostgreSQL lists (`ShardLocks.holders`) say which broker holds what. The id
is made once per running broker, by its supervisor at start (`new_broker_id`:
random), and handed to every child in the configuration it passes them
(`Config.broker_id`), so a restarted worker keeps it and two brokers never
share one (not two hosts whose names begin alike, not two cloned images
with the same host name and data directory). The host name before the
random part is for people reading pg_stat_activity or the logs: nothing
relies on it. ASCII only: PostgreSQL replaces any other character of an
application_name by '?'.
"""

from __future__ import annotations

import secrets
import socket
from collections import Counter
from collections.abc import Mapping

PREFIX = "flockmq shards "
WORKER = " worker "


def new_broker_id(host: str | None = None) -> str:
    """HOST:RANDOM, at most 33 ASCII characters (application_name keeps 63
    bytes): the host name's first 20 characters, anything but letters,
    digits, '.', '-' and '_' replaced by '_', then 96 random bits."""
    host = (host if host is not None else socket.gethostname())[:20]
    readable = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "_" for c in host)
    return f"{readable}:{secrets.token_hex(6)}"


def lock_node(broker: str, index: int) -> str:
    """The `node` given to ShardLocks by worker `index` of `broker`."""
    return f"{broker}{WORKER}{index}"


def broker_of(application_name: str) -> str:
    """The broker id in a lock connection's application_name ("" when it is
    not one of ours: such a holder is another broker as far as we know)."""
    if not application_name.startswith(PREFIX) or WORKER not in application_name:
        return ""
    return application_name[len(PREFIX) :].rsplit(WORKER, 1)[0]


def others(me: str, holders: Mapping[int, str]) -> Counter[str]:
    """How many shards each other broker holds (holders: shard ->
    application_name, ShardLocks.holders)."""
    return Counter(b for b in map(broker_of, holders.values()) if b != me)


def may_take(me: str, holders: Mapping[int, str]) -> bool:
    """A standby of broker `me` may keep the lock it just took: no other
    broker holds a shard of the namespace."""
    return not others(me, holders)


def must_yield(me: str, holders: Mapping[int, str]) -> bool:
    """An owner of broker `me` gives its shard up: another broker holds
    more shards, or as many with an id that sorts after `me`."""
    mine = sum(1 for name in holders.values() if broker_of(name) == me)
    return any((count, broker) > (mine, me) for broker, count in others(me, holders).items())
