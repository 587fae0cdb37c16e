"""PostgreSQL store (psycopg 3): durable state in a database server, for
brokers whose processes (later: hosts) share one store over the network.

Everything lives in one schema, `flockmq`, of the database the DSN names, so
the store can share a database with other applications' tables. Each `apply`
is one transaction on a connection in autocommit mode (`BEGIN` ... `COMMIT`),
with `synchronous_commit = on` set for the session whatever the server's
default: a commit the committer reports is in the server's fsynced WAL, so it
survives any broker process being killed and, with the server's `fsync` on
(checked at open; a warning when off), power loss — both durabilities.

Invariants:

- Same semantics as the SQLite store for every op and load (the backend tests
  run both): ops in order, one call one transaction, loads sorted in code point
  order (every text column is `COLLATE "C"`), bytes and bools come back typed.
- The schema is never overwritten: a `flockmq` schema with tables but no
  `meta` table, or a `format_version` newer than FORMAT_VERSION, raises
  StoreError naming the database. A missing schema is created with format 1
  and migrated up (MIGRATIONS), under a transaction-level advisory lock
  (SCHEMA_LOCK) so the processes that open it at once create it once.
- Writers of different processes may wait on each other's row locks (a PUBREL
  deletes seen rows of other shards); a deadlock or serialization failure
  rolls the whole transaction back and it is retried (RETRIES), so it never
  reaches the caller as a failed commit.
- Every psycopg failure leaves this module as StoreError naming the database
  (the DSN without its password); a broken connection is reopened by the next
  call, so the store works again once the server is back.
- A connection is used only by the thread that opened it; the committer opens
  its own through `writer()`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .base import (
    DeleteInboundQos2,
    DeleteMessage,
    DeleteRetained,
    DeleteSession,
    DeleteSubscription,
    ExpireRetained,
    InboundQos2Record,
    MessageRecord,
    Op,
    PruneSeenQos2,
    PutInboundQos2,
    PutMessage,
    PutRetained,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    RetainedRecord,
    SeenQos2Record,
    SessionRecord,
    Store,
    StoreError,
    SubscriptionRecord,
    UpdateMessage,
    Writer,
)
from .shard_fence import NotOwner, ShardFence, check_fence

log = logging.getLogger("flockmq.store")

FORMAT_VERSION = 3
"""The PostgreSQL schema format this code writes, and the newest it reads (its
own numbering: the SQLite file's format 2 holds the same rows). Format 2 adds
`shard_owners`, the epochs of the shard write fence, and `shard_namespaces`,
the worker count of each namespace (store/shard_fence.py); format 3
`node_leases`, the cluster nodes' liveness leases (store/node_leases.py)."""

DEFAULT_CONNECT_TIMEOUT = 10  # seconds, unless the DSN sets connect_timeout
# The server's TCP keepalives, per session (libpq `options`; user-settable
# GUCs): a backend whose peer went silent is ended within about 10 s instead
# of the kernel's two hours. On the lock connection (store/shard_locks.py)
# that releases a dead host's shard locks; on a writer connection it ends a
# dead host's in-flight commit, which holds its shard's fence row
# (store/shard_fence.py) and would block the next owner's claim when no
# survivor can evict it (flockmq/dead_nodes.py: no quorum and no expired lease).
SERVER_KEEPALIVES: dict[str, int] = {
    "tcp_keepalives_idle": 4,  # s
    "tcp_keepalives_interval": 2,  # s
    "tcp_keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


def with_server_keepalives(defaults: dict[str, str | int], given: dict[str, Any]) -> None:
    """Put SERVER_KEEPALIVES into `defaults`' libpq `options`, before the
    DSN's own (`given`, from which they are taken): a -c given there wins."""
    server = " ".join(f"-c {name}={value}" for name, value in SERVER_KEEPALIVES.items())
    defaults["options"] = f"{server} {given.get('options') or ''}".strip()
    given.pop("options", None)


SCHEMA_LOCK = 0x666C6F636B6D71  # "flockmq": pg_advisory_xact_lock key of schema changes
RETRIES = 5  # attempts of a transaction that lost a deadlock or serialization race

# Format 1, as it was first written. A new schema is created as format 1 and
# migrated up (MIGRATIONS), so every store takes the same path to the current
# format. Never edit SCHEMA_V1 or a migration: add one (FORMAT_VERSION + 1).
SCHEMA_V1 = (
    "CREATE TABLE flockmq.meta (key text PRIMARY KEY, value bigint NOT NULL)",
    'CREATE TABLE flockmq.sessions (client_id text COLLATE "C" PRIMARY KEY,'
    " expiry bigint NOT NULL, protocol_level integer NOT NULL, will bytea,"
    " disconnected_at double precision)",
    'CREATE TABLE flockmq.subscriptions (client_id text COLLATE "C" NOT NULL,'
    ' topic_filter text COLLATE "C" NOT NULL, qos integer NOT NULL,'
    " no_local boolean NOT NULL, retain_as_published boolean NOT NULL,"
    " retain_handling integer NOT NULL, sub_id integer,"
    " PRIMARY KEY (client_id, topic_filter))",
    'CREATE TABLE flockmq.messages (client_id text COLLATE "C" NOT NULL, seq bigint NOT NULL,'
    " topic text NOT NULL, payload bytea NOT NULL, qos integer NOT NULL,"
    " retain boolean NOT NULL, props bytea, packet_id integer NOT NULL,"
    " state integer NOT NULL, PRIMARY KEY (client_id, seq))",
    'CREATE TABLE flockmq.inbound_qos2 (client_id text COLLATE "C" NOT NULL,'
    " packet_id integer NOT NULL, token bigint NOT NULL, PRIMARY KEY (client_id, packet_id))",
    'CREATE TABLE flockmq.qos2_seen (origin text COLLATE "C" NOT NULL,'
    ' packet_id integer NOT NULL, client_id text COLLATE "C" NOT NULL, token bigint NOT NULL,'
    " PRIMARY KEY (origin, packet_id, client_id))",
    "CREATE INDEX qos2_seen_by_client ON flockmq.qos2_seen (client_id)",
    'CREATE TABLE flockmq.retained (topic text COLLATE "C" PRIMARY KEY,'
    " payload bytea NOT NULL, qos integer NOT NULL, props bytea)",
)

# MIGRATIONS[n]: the statements that turn format n - 1 into format n.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "CREATE TABLE flockmq.shard_owners (namespace integer NOT NULL, shard integer NOT NULL,"
        " epoch bigint NOT NULL, owner text NOT NULL, PRIMARY KEY (namespace, shard))",
        # the worker count every broker of the namespace must run (shard_fence.py)
        "CREATE TABLE flockmq.shard_namespaces (namespace integer PRIMARY KEY,"
        " workers integer NOT NULL)",
    ),
    3: (
        # one row per cluster node (store/node_leases.py), per lock namespace:
        # two clusters that share a database are two namespaces
        "CREATE TABLE flockmq.node_leases (namespace integer NOT NULL,"
        ' node text COLLATE "C" NOT NULL, incarnation bigint NOT NULL, broker text NOT NULL,'
        " renewed_at timestamptz NOT NULL, PRIMARY KEY (namespace, node))",
    ),
}

_MESSAGE_COLUMNS = "client_id, seq, topic, payload, qos, retain, props, packet_id, state"

COPY_MIN_ROWS = 64  # message puts in one run from which COPY beats executemany
_UPSERT_COPIED_MESSAGES = (
    f"INSERT INTO flockmq.messages ({_MESSAGE_COLUMNS})"
    f" SELECT {_MESSAGE_COLUMNS} FROM pg_temp.put_messages"
    " ON CONFLICT (client_id, seq) DO UPDATE SET topic = excluded.topic,"
    " payload = excluded.payload, qos = excluded.qos, retain = excluded.retain,"
    " props = excluded.props, packet_id = excluded.packet_id, state = excluded.state"
)

# Columns are always named (never SELECT * or a bare VALUES list), so a
# migration that adds one changes no query.
# Per op type: the statements it runs and its parameters, as in store.sqlite.
# A run of ops of one type goes through executemany (pipelined by psycopg:
# one round trip per run, not per row), which keeps their order.
_SQL: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    PutSession: (
        (
            "INSERT INTO flockmq.sessions"
            " (client_id, expiry, protocol_level, will, disconnected_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (client_id) DO UPDATE SET"
            " expiry = excluded.expiry, protocol_level = excluded.protocol_level,"
            " will = excluded.will, disconnected_at = excluded.disconnected_at",
        ),
        lambda o: (o.client_id, o.expiry, o.protocol_level, o.will, o.disconnected_at),
    ),
    DeleteSession: (
        (
            "DELETE FROM flockmq.sessions WHERE client_id = %s",
            "DELETE FROM flockmq.subscriptions WHERE client_id = %s",
            "DELETE FROM flockmq.messages WHERE client_id = %s",
            "DELETE FROM flockmq.inbound_qos2 WHERE client_id = %s",
            "DELETE FROM flockmq.qos2_seen WHERE client_id = %s",
            "DELETE FROM flockmq.qos2_seen WHERE origin = %s",
        ),
        lambda o: (o.client_id,),
    ),
    PutSubscription: (
        (
            "INSERT INTO flockmq.subscriptions (client_id, topic_filter, qos, no_local,"
            " retain_as_published, retain_handling, sub_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (client_id, topic_filter) DO UPDATE SET qos = excluded.qos,"
            " no_local = excluded.no_local, retain_as_published = excluded.retain_as_published,"
            " retain_handling = excluded.retain_handling, sub_id = excluded.sub_id",
        ),
        lambda o: (
            o.client_id,
            o.topic_filter,
            o.qos,
            o.no_local,
            o.retain_as_published,
            o.retain_handling,
            o.sub_id,
        ),
    ),
    DeleteSubscription: (
        ("DELETE FROM flockmq.subscriptions WHERE client_id = %s AND topic_filter = %s",),
        lambda o: (o.client_id, o.topic_filter),
    ),
    PutMessage: (
        (
            f"INSERT INTO flockmq.messages ({_MESSAGE_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (client_id, seq) DO UPDATE SET topic = excluded.topic,"
            " payload = excluded.payload, qos = excluded.qos, retain = excluded.retain,"
            " props = excluded.props, packet_id = excluded.packet_id, state = excluded.state",
        ),
        lambda o: (
            o.client_id,
            o.seq,
            o.topic,
            o.payload,
            o.qos,
            o.retain,
            o.props,
            o.packet_id,
            o.state,
        ),
    ),
    UpdateMessage: (
        (
            "UPDATE flockmq.messages SET packet_id = %s, state = %s"
            " WHERE client_id = %s AND seq = %s",
        ),
        lambda o: (o.packet_id, o.state, o.client_id, o.seq),
    ),
    DeleteMessage: (
        ("DELETE FROM flockmq.messages WHERE client_id = %s AND seq = %s",),
        lambda o: (o.client_id, o.seq),
    ),
    PutInboundQos2: (
        (
            "INSERT INTO flockmq.inbound_qos2 (client_id, packet_id, token) VALUES (%s, %s, %s)"
            " ON CONFLICT (client_id, packet_id) DO NOTHING",
        ),
        lambda o: (o.client_id, o.packet_id, o.token),
    ),
    DeleteInboundQos2: (
        (
            "DELETE FROM flockmq.inbound_qos2 WHERE client_id = %s AND packet_id = %s",
            "DELETE FROM flockmq.qos2_seen WHERE origin = %s AND packet_id = %s",
        ),
        lambda o: (o.client_id, o.packet_id),
    ),
    PutSeenQos2: (
        (
            "INSERT INTO flockmq.qos2_seen (origin, packet_id, client_id, token)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (origin, packet_id, client_id) DO UPDATE SET token = excluded.token",
        ),
        lambda o: (o.origin, o.packet_id, o.client_id, o.token),
    ),
    PruneSeenQos2: (
        (
            "DELETE FROM flockmq.qos2_seen AS s WHERE NOT EXISTS (SELECT 1"
            " FROM flockmq.inbound_qos2 AS i WHERE i.client_id = s.origin"
            " AND i.packet_id = s.packet_id AND i.token = s.token)",
        ),
        lambda o: (),
    ),
    PutRetained: (
        (
            "INSERT INTO flockmq.retained (topic, payload, qos, props) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (topic)"
            " DO UPDATE SET payload = excluded.payload, qos = excluded.qos, props = excluded.props",
        ),
        lambda o: (o.topic, o.payload, o.qos, o.props),
    ),
    DeleteRetained: (
        ("DELETE FROM flockmq.retained WHERE topic = %s",),
        lambda o: (o.topic,),
    ),
    ExpireRetained: (
        (
            "DELETE FROM flockmq.retained WHERE topic = %s AND payload = %s AND qos = %s"
            " AND props IS NOT DISTINCT FROM %s",
        ),
        lambda o: (o.topic, o.payload, o.qos, o.props),
    ),
}


def describe_dsn(dsn: str) -> str:
    """The database a DSN names, for messages and logs: never its password.
    StoreError for a DSN that does not parse."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as e:
        raise StoreError(f"postgres_dsn is not a valid PostgreSQL connection string: {e}") from e
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def redact_dsn(dsn: str) -> str:
    """`dsn` with its password (if any) replaced by ********, to print."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "********"
    if "password" not in params:
        return dsn
    params["password"] = "********"
    return " ".join(f"{key}={_quote(str(value))}" for key, value in params.items())


def _quote(value: str) -> str:
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _connect(dsn: str, name: str) -> psycopg.Connection[Any]:
    params = conninfo_to_dict(dsn)
    extra: dict[str, str | int] = {
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        "application_name": "flockmq",
    }
    with_server_keepalives(extra, params)
    conninfo = make_conninfo(dsn, **{k: v for k, v in extra.items() if k not in params})
    try:
        conn = psycopg.connect(conninfo, autocommit=True)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to {name}: {_first_line(e)}") from e
    try:
        conn.execute("SET synchronous_commit = on")
    except psycopg.Error as e:
        conn.close()
        raise StoreError(f"cannot use {name}: {_first_line(e)}") from e
    return conn


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_postgres(dsn: str) -> PostgresStore:
    """Connect to the database `dsn` names, create or migrate its `flockmq`
    schema, and return the store. StoreError when it cannot."""
    if not dsn:
        raise StoreError("postgres_dsn: the PostgreSQL store needs a connection string")
    name = describe_dsn(dsn)
    conn = _connect(dsn, name)
    try:
        _prepare(conn, name)
        _warn_without_fsync(conn, name)
    except BaseException:
        conn.close()
        raise
    return PostgresStore(dsn, name, conn)


def check_postgres(dsn: str) -> str:
    """Connect and read the schema's format without changing anything (for
    `flockmq check-config`); a line saying what was found, StoreError when
    the database cannot be reached or holds no readable flockmq store."""
    name = describe_dsn(dsn)
    conn = _connect(dsn, name)
    try:
        version = _format_version(conn, name)
    except psycopg.Error as e:
        raise StoreError(f"cannot read {name}: {_first_line(e)}") from e
    finally:
        conn.close()
    if version is None:
        return f"{name}: reachable, no flockmq store yet (created at the first start)"
    return f"{name}: reachable, flockmq store format {version}"


def _prepare(conn: psycopg.Connection[Any], name: str) -> None:
    """Check the format version; create the schema where there is none, migrate
    an older one; under the schema lock, re-checked once it is held."""
    try:
        if _format_version(conn, name) == FORMAT_VERSION:
            return
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            version = _format_version(conn, name)
            if version == FORMAT_VERSION:
                return
            if version is None:
                conn.execute("CREATE SCHEMA IF NOT EXISTS flockmq")
                for stmt in SCHEMA_V1:
                    conn.execute(stmt)
                conn.execute("INSERT INTO flockmq.meta VALUES ('format_version', 1)")
                version = 1
            else:
                log.warning(
                    "%s: migrating the store from format %d to %d", name, version, FORMAT_VERSION
                )
            for target in range(version + 1, FORMAT_VERSION + 1):
                for stmt in MIGRATIONS[target]:
                    conn.execute(stmt)
            conn.execute(
                "UPDATE flockmq.meta SET value = %s WHERE key = 'format_version'",
                (FORMAT_VERSION,),
            )
    except psycopg.Error as e:
        raise StoreError(f"cannot open {name} as a flockmq store: {_first_line(e)}") from e


def _format_version(conn: psycopg.Connection[Any], name: str) -> int | None:
    """The schema's format version; None when there is no `flockmq` schema or
    an empty one."""
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'flockmq'"
        )
    }
    if "meta" not in tables:
        if tables:
            raise StoreError(
                f"{name}: schema flockmq holds tables but is not a flockmq store"
                " (no meta table); left untouched"
            )
        return None
    row = conn.execute("SELECT value FROM flockmq.meta WHERE key = 'format_version'").fetchone()
    if row is None:
        raise StoreError(f"{name} has no format_version in flockmq.meta; left untouched")
    version = int(row[0])
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{name} was written by a newer flockmq (format {version};"
            f" this one reads up to {FORMAT_VERSION})"
        )
    if version < 1:
        raise StoreError(f"{name} has an unknown format version {version}; left untouched")
    return version


def _warn_without_fsync(conn: psycopg.Connection[Any], name: str) -> None:
    row = conn.execute("SHOW fsync").fetchone()
    if row is not None and row[0] != "on":
        log.warning("%s: the server runs with fsync = off: commits do not survive power loss", name)


def _apply_ops(
    conn: psycopg.Connection[Any], ops: Iterable[Op], fence: ShardFence | None = None
) -> None:
    """One transaction for all `ops`, in order, retried whole when it lost a
    deadlock or serialization race; raises psycopg.Error or StoreError after
    rolling back. With a `fence`, the transaction first checks that the
    shard's epoch is still the fence's (NotOwner, rolled back, otherwise)."""
    batch = list(ops)
    for attempt in range(1, RETRIES + 1):
        try:
            with conn.transaction(), conn.cursor() as cur:
                if fence is not None:
                    check_fence(cur, fence)
                for kind, run in itertools.groupby(batch, type):
                    _apply_run(cur, kind, list(run))
            return
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as e:
            if attempt == RETRIES:
                raise
            log.info("store: transaction retried (%s)", _first_line(e))


def _apply_run(cur: psycopg.Cursor[Any], kind: type, run: list[Any]) -> None:
    """A run of ops of one type: COPY for many message puts, else executemany."""
    if kind is PutMessage and len(run) >= COPY_MIN_ROWS:
        _copy_messages(cur, run)
        return
    entry = _SQL.get(kind)
    if entry is None:
        raise StoreError(f"not a store op: {kind.__name__}")
    statements, params = entry
    rows = [params(op) for op in run]
    for stmt in statements:
        cur.executemany(stmt, rows)


def _copy_messages(cur: psycopg.Cursor[Any], puts: list[PutMessage]) -> None:
    """Many PutMessage at once: COPY into a temporary table, then one upsert
    from it (a batch of queued QoS 1/2 messages for offline sessions). A later
    put of the same (client id, seq) replaces an earlier one, as in order."""
    latest = {(op.client_id, op.seq): op for op in puts}
    cur.execute(
        "CREATE TEMPORARY TABLE IF NOT EXISTS put_messages"
        " (LIKE flockmq.messages) ON COMMIT DELETE ROWS"
    )
    params = _SQL[PutMessage][1]
    with cur.copy(f"COPY pg_temp.put_messages ({_MESSAGE_COLUMNS}) FROM STDIN") as copy:
        for op in latest.values():
            copy.write_row(params(op))
    cur.execute(_UPSERT_COPIED_MESSAGES)
    cur.execute("DELETE FROM pg_temp.put_messages")  # a later run in this transaction


class PostgresWriter(Writer):
    """A committer thread's connection, opened at the first `apply` and again
    after one broke."""

    def __init__(self, dsn: str, name: str, store: PostgresStore | None = None) -> None:
        """`store`: whose `fence` (read at every apply) guards the commits."""
        self.path = name
        self._dsn = dsn
        self._store = store
        self._conn: psycopg.Connection[Any] | None = None

    def apply(self, ops: Iterable[Op]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self._dsn, self.path)
        fence = None if self._store is None else self._store.fence
        try:
            _apply_ops(self._conn, ops, fence)
        except psycopg.Error as e:
            if self._conn.broken:
                self.close()
            raise StoreError(f"{self.path}: commit failed: {_first_line(e)}") from e
        except NotOwner as e:
            self._not_owner(e)
            raise
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _not_owner(self, e: NotOwner) -> None:
        if self._store is not None:
            self._store._not_owner(e)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


class PostgresStore(Store):
    def __init__(self, dsn: str, name: str, conn: psycopg.Connection[Any]) -> None:
        self.path = name
        self._dsn = dsn
        self._conn: psycopg.Connection[Any] | None = conn
        self._closed = False
        # Set by a session worker once it claimed its shard (workers/ownership.py):
        # from then on every commit, this store's and its writers', is fenced.
        self.fence: ShardFence | None = None
        # Called (from the thread that committed) when a fenced commit was
        # refused: the process is not the shard's owner any more.
        self.on_not_owner: Callable[[NotOwner], None] | None = None

    def writer(self) -> Writer:
        return PostgresWriter(self._dsn, self.path, self)

    def apply(self, ops: Iterable[Op]) -> None:
        conn = self._open_conn()
        try:
            _apply_ops(conn, ops, self.fence)
        except psycopg.Error as e:
            raise StoreError(f"{self.path}: commit failed: {_first_line(e)}") from e
        except NotOwner as e:
            self._not_owner(e)
            raise
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _not_owner(self, e: NotOwner) -> None:
        if self.on_not_owner is not None:
            self.on_not_owner(e)

    def _open_conn(self) -> psycopg.Connection[Any]:
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        if self._conn is None or self._conn.closed:
            self._conn = _connect(self._dsn, self.path)
        return self._conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[psycopg.Cursor[Any]]:
        """A read-only REPEATABLE READ transaction: every select inside sees
        one committed state."""
        conn = self._open_conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield cur
        except psycopg.Error as e:
            raise StoreError(f"{self.path}: read failed: {_first_line(e)}") from e

    def load_sessions(self, accept: Callable[[str], bool]) -> list[SessionRecord]:
        with self._snapshot() as cur:
            cur.execute(
                "SELECT client_id, expiry, protocol_level, will, disconnected_at"
                " FROM flockmq.sessions ORDER BY client_id"
            )
            heads = [row for row in cur.fetchall() if accept(row[0])]
            ids = [row[0] for row in heads]
            subs = _select(
                cur,
                "SELECT client_id, topic_filter, qos, no_local, retain_as_published,"
                " retain_handling, sub_id FROM flockmq.subscriptions WHERE client_id = ANY(%s)"
                " ORDER BY client_id, topic_filter",
                ids,
                lambda r: SubscriptionRecord(r[1], r[2], r[3], r[4], r[5], r[6]),
            )
            msgs = _select(
                cur,
                f"SELECT {_MESSAGE_COLUMNS} FROM flockmq.messages WHERE client_id = ANY(%s)"
                " ORDER BY client_id, seq",
                ids,
                lambda r: MessageRecord(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]),
            )
            qos2 = _select(
                cur,
                "SELECT client_id, packet_id, token FROM flockmq.inbound_qos2"
                " WHERE client_id = ANY(%s) ORDER BY client_id, packet_id",
                ids,
                lambda r: InboundQos2Record(r[1], r[2]),
            )
            seen = _select(
                cur,
                "SELECT client_id, origin, packet_id, token FROM flockmq.qos2_seen"
                " WHERE client_id = ANY(%s) ORDER BY client_id, origin, packet_id",
                ids,
                lambda r: SeenQos2Record(r[1], r[2], r[3]),
            )
        return [
            SessionRecord(
                cid,
                expiry,
                level,
                will,
                disconnected_at,
                tuple(subs.get(cid, ())),
                tuple(msgs.get(cid, ())),
                tuple(qos2.get(cid, ())),
                tuple(seen.get(cid, ())),
            )
            for cid, expiry, level, will, disconnected_at in heads
        ]

    def load_retained(self) -> list[RetainedRecord]:
        with self._snapshot() as cur:
            cur.execute("SELECT topic, payload, qos, props FROM flockmq.retained ORDER BY topic")
            return [RetainedRecord(t, p, q, props) for t, p, q, props in cur.fetchall()]

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def _select(
    cur: psycopg.Cursor[Any],
    query: str,
    ids: list[str],
    make: Callable[[tuple[Any, ...]], Any],
) -> dict[str, list[Any]]:
    """Rows of the wanted sessions, sorted by client id (column 0) -> {client
    id: [make(row)...]}."""
    out: dict[str, list[Any]] = {}
    if not ids:
        return out
    cur.execute(query, (ids,))
    for row in cur.fetchall():
        out.setdefault(row[0], []).append(make(row))
    return out
