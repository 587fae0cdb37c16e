"""Evicting a dead cluster node from PostgreSQL (issue 14): a survivor ends
the dead node's sessions, so its shards' advisory locks are free within
seconds instead of when the server's keepalives notice (store/shard_locks.py:
about 10 s for a lock connection; for the store's writer connections, which
set no keepalives of their own, the kernel's default, two hours).

A cluster node's supervisor calls `evict_node` (flockmq/app/cluster_moves.py,
off its loop: it is a blocking round trip) when membership
(flockmq/membership.py) declares a node dead (LEFT: its address and the
broker id its heartbeats carried) or restarted (RESTARTED: the old
incarnation's broker id only, never the address, which the new incarnation
uses), and only when flockmq/dead_nodes.py allows it: with a quorum
(`Membership.has_quorum`), or once the dead node's liveness lease
(store/node_leases.py) expired while the caller's own was just renewed. A
node cut off alone must not evict the others: it has no quorum, and
cannot renew its lease.

Which sessions (backends of this database, never the caller's own):

- `address`: every session whose client address is the dead node's. A dead
  host's sessions are all dead, the lock connections and also the writer
  connections, whose transaction may hold a shard's fence row FOR SHARE
  (store/shard_fence.py): a successor's claim waits for that row, so it
  would wait as long as the dead writer's session lives. The client
  address is the node's own only where its connections leave from that
  address (each host its own address, as in the cluster tests); behind a
  NAT or a pooler it is not, and `broker` is what remains.
- `broker`: every lock connection of that broker id (application_name
  "flockmq shards BROKER worker N", workers/serving_broker.py `broker_of`).

Why this is safe against a node that is not dead but cut off from the
others (a zombie): ending its lock sessions only makes it lose its locks
sooner (its workers see LocksLost and exit, workers/ownership.py), and
whatever its writers still try to commit is refused by the epoch fence once
a survivor has claimed the shard (store/shard_fence.py `check_fence`).

Rights: pg_terminate_backend needs the same role as the session's (all nodes
of a cluster connect as one role), membership in pg_signal_backend, or a
superuser; a session it may not end is logged and left to the keepalives.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from flockmq.workers.serving_broker import PREFIX, broker_of

from .base import StoreError
from .postgres import DEFAULT_CONNECT_TIMEOUT, _first_line, describe_dsn

log = logging.getLogger("flockmq.store")

# Every chosen session is signalled first, then all are waited for together,
# this long at most: pg_terminate_backend(pid, timeout) waits for ONE session
# in steps of 100 ms, so ending them one by one cost ~0.1 s each (a dead
# node of 3 shard workers has ~11 sessions: ~1.1 s more failover, measured
# in tests/cluster/test_two_nodes.py).
TERMINATE_WAIT_MS = 5000
GONE_POLL = 0.02  # seconds between two looks at which sessions are still there

CANDIDATES_SQL = (
    "SELECT pid, coalesce(host(client_addr), ''), coalesce(application_name, '')"
    " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    " AND backend_start < now() - make_interval(secs => %s)"
    " AND (host(client_addr) = %s OR left(application_name, %s) = %s)"
)
TERMINATE_SQL = "SELECT pg_terminate_backend(%s)"  # signals it; True when it was sent
# a session leaves pg_stat_activity after it released its locks (at its exit)
STILL_THERE_SQL = (
    "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity WHERE pid = ANY(%s::int[])"
)


@dataclass(frozen=True, slots=True)
class Eviction:
    """What `evict_node` did: the sessions it ended, and those it could not
    (already gone, or not allowed: see the module's docstring)."""

    ended: tuple[int, ...]
    failed: tuple[int, ...]


def evict_node(
    dsn: str, *, address: str = "", broker: str = "", silent_for: float = 0.0
) -> Eviction:
    """End every session of the database `dsn` names that comes from
    `address` or is a lock connection of `broker` (either may be ""; both
    "" ends nothing), and that started more than `silent_for` seconds ago
    (by the server's clock: give the time since the node was last heard, so
    the sessions of a node that came back since, or of its new
    incarnation, are left alone). Returns once each has ended (or
    TERMINATE_WAIT_MS passed). StoreError when the database cannot
    be reached."""
    if not address and not broker:
        return Eviction((), ())
    name = describe_dsn(dsn)
    conninfo = make_conninfo(
        dsn, connect_timeout=DEFAULT_CONNECT_TIMEOUT, application_name="flockmq evict"
    )
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return _evict(conn, address, broker, max(0.0, silent_for))
    except psycopg.Error as e:
        raise StoreError(f"cannot evict from {name}: {_first_line(e)}") from e


def _evict(conn: psycopg.Connection[Any], address: str, broker: str, silent_for: float) -> Eviction:
    params = (silent_for, address or None, len(PREFIX), PREFIX)
    rows = conn.execute(CANDIDATES_SQL, params).fetchall()
    chosen = sorted(
        pid
        for pid, client, application in rows
        if (address and client == address) or (broker and broker_of(application) == broker)
    )
    signalled: list[int] = []
    failed: list[int] = []
    for pid in chosen:
        try:
            row = conn.execute(TERMINATE_SQL, (pid,)).fetchone()
        except psycopg.errors.InsufficientPrivilege as e:
            log.warning("evicting: may not end session %d: %s", pid, _first_line(e))
            failed.append(pid)
            continue
        (signalled if row is not None and row[0] else failed).append(pid)
    left = _wait_gone(conn, signalled)
    ended = [pid for pid in signalled if pid not in left]
    failed = sorted(failed + sorted(left))
    if chosen:
        log.warning(
            "evicted node (address %s, broker %s): ended sessions %s%s",
            address or "-",
            broker or "-",
            ended,
            f", could not end {failed}" if failed else "",
        )
    return Eviction(tuple(ended), tuple(failed))


def _wait_gone(conn: psycopg.Connection[Any], pids: list[int]) -> set[int]:
    """Wait until none of `pids` is a session any more, TERMINATE_WAIT_MS at
    most; those still there."""
    deadline = time.monotonic() + TERMINATE_WAIT_MS / 1000
    while pids:
        row = conn.execute(STILL_THERE_SQL, (pids,)).fetchone()
        pids = sorted(row[0]) if row is not None else []
        if not pids or time.monotonic() >= deadline:
            break
        time.sleep(GONE_POLL)
    return set(pids)
