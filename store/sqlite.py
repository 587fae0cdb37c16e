"""Embedded SQLite store (stdlib sqlite3): one WAL-mode file, `flockmq.db`.

Several processes (the router and every worker) open the same file; each
writes only its own rows, so writers contend only for SQLite's single write
lock, which every connection waits for up to `busy_timeout_ms`. Transactions
are short: one per `apply` call, `BEGIN IMMEDIATE` (take the write lock up
front, so the busy handler applies) ... `COMMIT`.

Invariants:

- The file is never overwritten or discarded: a file that is not a database,
  fails `PRAGMA quick_check`, lacks our `meta` table but has other tables, or
  has a `format_version` newer than FORMAT_VERSION raises StoreError naming it.
  A missing file (and its directory) is created with the current schema. An
  older format is migrated in place, in one transaction, with a log line
  (format 1 -> 2: inbound QoS 2 tokens, the qos2_seen table, and the unused
  inbound table dropped); after that an older flockmq refuses the file as
  newer, it never misreads it.
- durability "process": `synchronous=NORMAL` in WAL, a commit survives any
  process being killed; "power": `synchronous=FULL`, each commit is fsynced.
- Every sqlite3/OS failure leaves this module as StoreError naming the file;
  a failed `apply` has rolled back, and the handle works again once the cause
  (lock held, disk full, permissions) goes away.
- A connection is used only by the thread that opened it (sqlite3's default
  check); the committer opens its own through `writer()`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .base import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DURABILITIES,
    FORMAT_VERSION,
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

log = logging.getLogger("flockmq.store")

DB_NAME = "flockmq.db"

# Format 1, as it was first written. A new store is created as format 1 and
# migrated up (MIGRATIONS), so every store takes the same path to the current
# format. Never edit SCHEMA_V1 or a migration: add one (FORMAT_VERSION + 1),
# with its golden file; the golden file tests of the older formats must pass.
SCHEMA_V1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value NOT NULL)",
    "CREATE TABLE sessions ("
    " client_id TEXT PRIMARY KEY, expiry INTEGER NOT NULL, protocol_level INTEGER NOT NULL,"
    " will BLOB, disconnected_at REAL)",
    "CREATE TABLE subscriptions ("
    " client_id TEXT NOT NULL, topic_filter TEXT NOT NULL, qos INTEGER NOT NULL,"
    " no_local INTEGER NOT NULL, retain_as_published INTEGER NOT NULL,"
    " retain_handling INTEGER NOT NULL, sub_id INTEGER,"
    " PRIMARY KEY (client_id, topic_filter)) WITHOUT ROWID",
    "CREATE TABLE messages ("
    " client_id TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, props BLOB,"
    " packet_id INTEGER NOT NULL, state INTEGER NOT NULL,"
    " PRIMARY KEY (client_id, seq))",
    "CREATE TABLE inbound_qos2 ("
    " client_id TEXT NOT NULL, packet_id INTEGER NOT NULL,"
    " PRIMARY KEY (client_id, packet_id)) WITHOUT ROWID",
    "CREATE TABLE retained ("
    " topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL, props BLOB)",
    "CREATE TABLE inbound ("
    " msg_id INTEGER PRIMARY KEY, origin TEXT NOT NULL, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, props BLOB)",
)

# MIGRATIONS[n]: the statements that turn format n - 1 into format n.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Inbound QoS 2 ids keep the token that names their message across resends,
    # and destinations remember the QoS 2 messages they took until the
    # publisher releases them, so a resend after a crash is not delivered twice.
    2: (
        "ALTER TABLE inbound_qos2 ADD COLUMN token INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE qos2_seen ("
        " origin TEXT NOT NULL, packet_id INTEGER NOT NULL, client_id TEXT NOT NULL,"
        " token INTEGER NOT NULL, PRIMARY KEY (origin, packet_id, client_id)) WITHOUT ROWID",
        "CREATE INDEX qos2_seen_by_client ON qos2_seen (client_id)",
        # The inbound write-ahead log of format 1 was never written by any
        # flockmq (acknowledgements wait for the destinations' commits instead).
        # Appended while format 2 was still unreleased.
        "DROP TABLE inbound",
    ),
}

# Per op type: the statements it runs and its parameters. A run of ops of one
# type goes through executemany, which keeps their order.
_SQL: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {
    PutSession: (
        ("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?)",),
        lambda o: (o.client_id, o.expiry, o.protocol_level, o.will, o.disconnected_at),
    ),
    DeleteSession: (
        (
            "DELETE FROM sessions WHERE client_id = ?",
            "DELETE FROM subscriptions WHERE client_id = ?",
            "DELETE FROM messages WHERE client_id = ?",
            "DELETE FROM inbound_qos2 WHERE client_id = ?",
            "DELETE FROM qos2_seen WHERE client_id = ?",
            "DELETE FROM qos2_seen WHERE origin = ?",
        ),
        lambda o: (o.client_id,),
    ),
    PutSubscription: (
        ("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?, ?, ?, ?, ?)",),
        lambda o: (
            o.client_id,
            o.topic_filter,
            o.qos,
            int(o.no_local),
            int(o.retain_as_published),
            o.retain_handling,
            o.sub_id,
        ),
    ),
    DeleteSubscription: (
        ("DELETE FROM subscriptions WHERE client_id = ? AND topic_filter = ?",),
        lambda o: (o.client_id, o.topic_filter),
    ),
    PutMessage: (
        ("INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",),
        lambda o: (
            o.client_id,
            o.seq,
            o.topic,
            o.payload,
            o.qos,
            int(o.retain),
            o.props,
            o.packet_id,
            o.state,
        ),
    ),
    UpdateMessage: (
        ("UPDATE messages SET packet_id = ?, state = ? WHERE client_id = ? AND seq = ?",),
        lambda o: (o.packet_id, o.state, o.client_id, o.seq),
    ),
    DeleteMessage: (
        ("DELETE FROM messages WHERE client_id = ? AND seq = ?",),
        lambda o: (o.client_id, o.seq),
    ),
    PutInboundQos2: (
        ("INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id, token) VALUES (?, ?, ?)",),
        lambda o: (o.client_id, o.packet_id, o.token),
    ),
    DeleteInboundQos2: (
        (
            "DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?",
            "DELETE FROM qos2_seen WHERE origin = ? AND packet_id = ?",
        ),
        lambda o: (o.client_id, o.packet_id),
    ),
    PutSeenQos2: (
        (
            "INSERT OR REPLACE INTO qos2_seen (origin, packet_id, client_id, token)"
            " VALUES (?, ?, ?, ?)",
        ),
        lambda o: (o.origin, o.packet_id, o.client_id, o.token),
    ),
    PruneSeenQos2: (
        (
            "DELETE FROM qos2_seen WHERE NOT EXISTS (SELECT 1 FROM inbound_qos2 AS i"
            " WHERE i.client_id = qos2_seen.origin AND i.packet_id = qos2_seen.packet_id"
            " AND i.token = qos2_seen.token)",
        ),
        lambda o: (),
    ),
    PutRetained: (
        ("INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?)",),
        lambda o: (o.topic, o.payload, o.qos, o.props),
    ),
    DeleteRetained: (
        ("DELETE FROM retained WHERE topic = ?",),
        lambda o: (o.topic,),
    ),
    ExpireRetained: (
        ("DELETE FROM retained WHERE topic = ? AND payload = ? AND qos = ? AND props IS ?",),
        lambda o: (o.topic, o.payload, o.qos, o.props),
    ),
}


_UNREADABLE = ("SQLITE_NOTADB", "SQLITE_CORRUPT")


def _explain(e: sqlite3.Error) -> str:
    name = getattr(e, "sqlite_errorname", "")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")):
        return f"{e} (the file and its directory must be writable by this user)"
    return str(e)


def db_path(data_dir: str) -> str:
    return os.path.join(data_dir, DB_NAME)


def open_sqlite(
    data_dir: str,
    durability: str = "process",
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    check: bool = True,
) -> SqliteStore:
    """Open (creating if missing) `data_dir/flockmq.db`. `check` runs
    `PRAGMA quick_check` (reads the whole file once)."""
    if durability not in DURABILITIES:
        raise StoreError(f"durability must be one of {DURABILITIES}, not {durability!r}")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the data directory {data_dir}: {e}") from e
    path = db_path(data_dir)
    conn = _connect(path, durability, busy_timeout_ms)
    try:
        if check:
            _quick_check(conn, path)
        _prepare(conn, path)
    except BaseException:
        conn.close()
        raise
    return SqliteStore(path, durability, busy_timeout_ms, conn)


def _connect(path: str, durability: str, busy_timeout_ms: int) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {path}: {_explain(e)}") from e
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        level = "FULL" if durability == "power" else "NORMAL"
        conn.execute(f"PRAGMA synchronous = {level}")
    except sqlite3.Error as e:
        conn.close()
        if getattr(e, "sqlite_errorname", "") in _UNREADABLE:
            raise StoreError(f"{path} is not a readable flockmq store ({e}); left untouched") from e
        raise StoreError(f"cannot open {path}: {_explain(e)}") from e
    return conn


def _quick_check(conn: sqlite3.Connection, path: str) -> None:
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a readable flockmq store ({e}); left untouched") from e
    if rows != [("ok",)]:
        problem = rows[0][0] if rows else "no result"
        raise StoreError(
            f"{path} failed its integrity check (PRAGMA quick_check: {problem}); left untouched"
        )


def _prepare(conn: sqlite3.Connection, path: str) -> None:
    """Check the format version; create the schema in an empty file, migrate an
    older one. Both re-check under the write lock, since several processes
    open the file at once."""
    try:
        version = _format_version(conn, path)
        _set_wal(conn, path)  # ours: already WAL (a no-op); empty: WAL from now on
        if version == FORMAT_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = _format_version(conn, path)
            if version is None:
                for stmt in SCHEMA_V1:
                    conn.execute(stmt)
                conn.execute("INSERT INTO meta VALUES ('format_version', 1)")
                version = 1
            elif version < FORMAT_VERSION:
                log.warning(
                    "%s: migrating the store from format %d to %d", path, version, FORMAT_VERSION
                )
            for target in range(version + 1, FORMAT_VERSION + 1):
                for stmt in MIGRATIONS[target]:
                    conn.execute(stmt)
            conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'format_version'", (FORMAT_VERSION,)
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot open {path} as a flockmq store: {_explain(e)}") from e


def _set_wal(conn: sqlite3.Connection, path: str, deadline_s: float = 30.0) -> None:
    """WAL mode. Switching a new file to WAL needs it to itself, and SQLite
    answers "database is locked" at once, without its busy timeout, when
    another process is switching or creating it at the same moment (every
    broker process opens the file when a broker starts on a new data dir):
    such a lock is waited out here."""
    deadline = time.monotonic() + deadline_s
    delay = 0.005
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot put {path} in WAL mode (journal_mode is {mode})")


def _format_version(conn: sqlite3.Connection, path: str) -> int | None:
    """The file's format version; None for an empty file (no tables at all)."""
    try:
        tables = {
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is not a readable flockmq store ({e}); left untouched") from e
    if "meta" not in tables:
        if tables:
            raise StoreError(
                f"{path} is a database but not a flockmq store (no meta table); left untouched"
            )
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    if row is None or not isinstance(row[0], int):
        raise StoreError(f"{path} has no valid format_version in its meta table; left untouched")
    version: int = row[0]
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path} was written by a newer flockmq (format {version};"
            f" this one reads up to {FORMAT_VERSION})"
        )
    if version < 1:
        raise StoreError(f"{path} has an unknown format version {version}; left untouched")
    return version


def _apply_ops(conn: sqlite3.Connection, ops: Iterable[Op]) -> None:
    """One transaction for all `ops`, in order; raises sqlite3.Error or StoreError
    after rolling back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for kind, run in itertools.groupby(ops, type):
            entry = _SQL.get(kind)
            if entry is None:
                raise StoreError(f"not a store op: {kind.__name__}")
            statements, params = entry
            rows = [params(op) for op in run]
            for stmt in statements:
                conn.executemany(stmt, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


class SqliteWriter(Writer):
    """A committer thread's connection. After a failure whose rollback also
    failed it reconnects on the next `apply`."""

    def __init__(self, path: str, durability: str, busy_timeout_ms: int) -> None:
        self.path = path
        self._durability = durability
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None

    def apply(self, ops: Iterable[Op]) -> None:
        if self._conn is None:
            self._conn = _connect(self.path, self._durability, self._busy_timeout_ms)
        conn = self._conn
        try:
            _apply_ops(conn, ops)
        except sqlite3.Error as e:
            if conn.in_transaction:
                self.close()
            raise StoreError(f"{self.path}: commit failed: {_explain(e)}") from e
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from e

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


class SqliteStore(Store):
    def __init__(
        self, path: str, durability: str, busy_timeout_ms: int, conn: sqlite3.Connection
    ) -> None:
        self.path = path
        self.durability = durability
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = conn

    def writer(self) -> Writer:
        return SqliteWriter(self.path, self.durability, self._busy_timeout_ms)

    def apply(self, ops: Iterable[Op]) -> None:
        conn = self._open_conn()
        try:
            _apply_ops(conn, ops)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: commit failed: {_explain(e)}") from e
        except StoreError as e:
            raise StoreError(f"{self.path}: {e}") from e

    def _open_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: store is closed")
        return self._conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every select inside sees one committed state."""
        conn = self._open_conn()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: read failed: {e}") from e

    def load_sessions(self, accept: Callable[[str], bool]) -> list[SessionRecord]:
        with self._snapshot() as conn:
            heads = [
                row
                for row in conn.execute("SELECT * FROM sessions ORDER BY client_id")
                if accept(row[0])
            ]
            wanted = {row[0] for row in heads}
            subs = _group(
                conn.execute("SELECT * FROM subscriptions ORDER BY client_id, topic_filter"),
                wanted,
                lambda r: SubscriptionRecord(r[1], r[2], bool(r[3]), bool(r[4]), r[5], r[6]),
            )
            msgs = _group(
                conn.execute("SELECT * FROM messages ORDER BY client_id, seq"),
                wanted,
                lambda r: MessageRecord(
                    r[1], r[2], bytes(r[3]), r[4], bool(r[5]), r[6], r[7], r[8]
                ),
            )
            qos2 = _group(
                conn.execute(
                    "SELECT client_id, packet_id, token FROM inbound_qos2"
                    " ORDER BY client_id, packet_id"
                ),
                wanted,
                lambda r: InboundQos2Record(r[1], r[2]),
            )
            seen = _group(
                conn.execute(
                    "SELECT client_id, origin, packet_id, token FROM qos2_seen"
                    " ORDER BY client_id, origin, packet_id"
                ),
                wanted,
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
        with self._snapshot() as conn:
            return [
                RetainedRecord(t, bytes(p), q, props)
                for t, p, q, props in conn.execute("SELECT * FROM retained ORDER BY topic")
            ]

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


def _group(
    rows: Iterable[tuple[Any, ...]], wanted: set[str], make: Callable[[tuple[Any, ...]], Any]
) -> dict[str, list[Any]]:
    """Rows sorted by client id (column 0) -> {client id: [make(row)...]}, for
    the wanted client ids only."""
    out: dict[str, list[Any]] = {}
    for row in rows:
        if row[0] in wanted:
            out.setdefault(row[0], []).append(make(row))
    return out
