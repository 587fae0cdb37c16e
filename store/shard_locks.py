"""Session shard ownership through PostgreSQL advisory locks (issue 14): a
node owns a shard while it holds that shard's session-level advisory lock on
a connection of its own that it keeps open.

Used by every session worker on the PostgreSQL store (workers/ownership.py):
each holds its own shard's lock, taken and checked off the event loop (every
call here is a blocking round trip on the holder's connection), and fences
its writes with the shard's epoch (store/shard_fence.py). The planner
(flockmq/shard_plan.py) is used through the shard manager
(flockmq/shard_manager.py), which starts one worker per shard.

Invariants:

- One dedicated connection per holder, in autocommit mode, used for nothing
  else: session-level advisory locks belong to the connection (the backend),
  so closing it, or PostgreSQL terminating it, releases them all, and a node
  that dies loses its shards without saying so.
- Keys are the two-int form `(namespace, shard)`: PostgreSQL keeps them apart
  from every one-bigint key (the store's SCHEMA_LOCK, other applications'),
  and `namespace` (NAMESPACE, "floc", unless given) from other two-int users.
  Advisory locks are per database: two clusters sharing one database need
  different namespaces.
- `held` is what this holder believes it owns, and is true only while the
  connection is alive: any failure of the connection (a closed socket, a
  terminated backend, a query past `tcp_user_timeout`) makes every lock lost
  at once: `held` is emptied, the connection closed, and `LocksLost` names
  the shards. A caller that catches it must stop acting as their owner
  before anything else. The next `acquire` connects again.
- Each lock is taken at most once per holder: `acquire` of a shard already
  held does not call PostgreSQL (a second pg_try_advisory_lock on the same
  session would stack, and one unlock would then not release it).

Failover bound on a dead host or a cut link. PostgreSQL releases the locks
of a session only when the SERVER sees its connection is gone; its own TCP
keepalives default to the kernel's (two hours idle). So the lock
connection sets them per session (SERVER_KEEPALIVES, sent as libpq
`options`; all four are user-settable GUCs, no superuser needed): a backend
whose peer went silent is ended within about 10 s (4 s idle, then 3 probes
2 s apart; or 10 s of unacknowledged data, tcp_user_timeout), which ends
its session and releases its locks. A standby then takes the shard within
its retry interval (0.5 s, workers/ownership.py) and loads it: about 11 s
from the cut to the takeover, plus the load. The holder itself notices
within its own libpq keepalives / tcp_user_timeout (CONNECTION_DEFAULTS)
at its next check (workers/ownership.py: every second), and stops serving.
These are ignored on a Unix socket (no TCP: a local server sees a dead
process's socket close at once), and a pooler between broker and server
(pgbouncer) would keep the server's session alive: do not put one on the
lock connection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .base import StoreError
from .postgres import (
    DEFAULT_CONNECT_TIMEOUT,
    _first_line,
    describe_dsn,
    with_server_keepalives,
)

log = logging.getLogger("flockmq.store")

NAMESPACE = 0x666C6F63  # "floc": the first key of every shard lock (int4)
MAX_SHARD = 0x7FFFFFFF  # the second key is an int4 too
# Unless the DSN says otherwise: notice a dead server or network within
# seconds, not the kernel's two hours (libpq's keepalives, tcp_user_timeout).
CONNECTION_DEFAULTS: dict[str, str | int] = {
    "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


def holder_conninfo(dsn: str, application_name: str) -> str:
    """`dsn` with CONNECTION_DEFAULTS and SERVER_KEEPALIVES where it sets
    none of its own: a connection that must notice a dead peer within
    seconds, both ends (also store/node_leases.py's)."""
    defaults: dict[str, str | int] = {
        **CONNECTION_DEFAULTS,
        "application_name": application_name.strip()[:63],
    }
    given = conninfo_to_dict(dsn)
    # The DSN's own `options` come after ours: a -c given there wins.
    with_server_keepalives(defaults, given)
    return make_conninfo(dsn, **{k: v for k, v in defaults.items() if k not in given})


class LocksLost(StoreError):
    """The holder's connection failed: every lock it held is gone (`shards`)."""

    def __init__(self, message: str, shards: frozenset[int]) -> None:
        super().__init__(message)
        self.shards = shards


class ShardLocks:
    def __init__(self, dsn: str, node: str = "", namespace: int = NAMESPACE) -> None:
        """Holds nothing and connects at the first call. `node` names the
        connection (application_name "flockmq shards NODE") for pg_stat_activity."""
        if not 0 <= namespace <= 0x7FFFFFFF:
            raise ValueError(f"namespace {namespace}: must be an int4 >= 0")
        self.name = describe_dsn(dsn)  # also checks that the DSN parses
        self.conninfo = holder_conninfo(dsn, f"flockmq shards {node}")
        self.namespace = namespace
        self.held: set[int] = set()
        self.conn: psycopg.Connection[Any] | None = None

    # --- the connection ------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            try:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
            except psycopg.Error as e:
                raise StoreError(f"cannot connect to {self.name}: {_first_line(e)}") from e
        return self.conn

    def _query(self, sql: str, *params: int) -> Any:
        """One row's first value. A failure of the connection loses every lock."""
        conn = self._connection()
        try:
            row = conn.execute(sql, params).fetchone()
        except psycopg.Error as e:
            if not conn.broken and not conn.closed:
                raise StoreError(f"{self.name}: {_first_line(e)}") from e
            self._lose(f"connection to {self.name} lost: {_first_line(e)}")
        assert row is not None
        return row[0]

    def _lose(self, why: str) -> NoReturn:
        lost = frozenset(self.held)
        self.held.clear()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if lost:
            log.warning("shard locks: %s; lost shards %s", why, sorted(lost))
        raise LocksLost(f"{why}; lost shards {sorted(lost)}", lost)

    @property
    def backend_pid(self) -> int | None:
        """The server process of this holder's connection (None: not connected)."""
        return None if self.conn is None else self.conn.info.backend_pid

    # --- the locks -----------------------------------------------------------------
    def acquire(self, shard: int) -> bool:
        """Try to take `shard`'s lock without waiting: True when this holder
        holds it (now or already), False when another session does."""
        _check_shard(shard)
        if shard in self.held:
            return True
        if self._query("SELECT pg_try_advisory_lock(%s::int, %s::int)", self.namespace, shard):
            self.held.add(shard)
            return True
        return False

    def release(self, shard: int) -> bool:
        """Let `shard` go: False when this holder did not hold it."""
        _check_shard(shard)
        if shard not in self.held:
            return False
        self.held.discard(shard)  # gone whatever the answer: the lock, or the session
        unlock = "SELECT pg_advisory_unlock(%s::int, %s::int)"
        released = bool(self._query(unlock, self.namespace, shard))
        if not released:
            log.warning("shard locks: shard %d was not locked by this session", shard)
        return released

    def acquire_all(self, shards: Iterable[int]) -> set[int]:
        """Try each of `shards`; those this holder holds afterwards."""
        return {shard for shard in shards if self.acquire(shard)}

    def check(self) -> frozenset[int]:
        """Ask the server which of this namespace's locks this session holds
        (a round trip that also proves the connection alive); LocksLost when
        it is not, or when the server's answer differs from `held` (then no
        lock this holder believed it had can be trusted)."""
        if self.conn is None:
            return frozenset()
        rows = self._query(
            "SELECT coalesce(array_agg(objid::int), '{}') FROM pg_locks"
            " WHERE locktype = 'advisory' AND objsubid = 2 AND granted"
            " AND classid = %s::int::oid AND pid = pg_backend_pid()",
            self.namespace,
        )
        on_server = frozenset(rows)
        if on_server != self.held:
            self._lose(f"{self.name} holds shards {sorted(on_server)}, not {sorted(self.held)}")
        return on_server

    def holders(self) -> dict[int, str]:
        """Every shard of this namespace locked by any session of this
        database, with the application_name of that session (this holder's
        own included). pg_locks lists the locks of the whole server: an
        advisory lock of another database is another key, not a rival."""
        rows = self._query(
            "SELECT coalesce(json_object_agg(l.objid::int, coalesce(a.application_name, '')),"
            " '{}') FROM pg_locks AS l LEFT JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND l.classid = %s::int::oid",
            self.namespace,
        )
        return {int(shard): str(name) for shard, name in rows.items()}

    def close(self) -> None:
        """Release everything: closing the session ends its locks."""
        self.held.clear()
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _check_shard(shard: int) -> None:
    if not 0 <= shard <= MAX_SHARD:
        raise ValueError(f"shard {shard}: must be an int4 >= 0")
