"""Durable state behind one small interface; embedded backend by default.

`open_store(kind, data_dir, durability)` returns a `Store`: "sqlite" (the
default, one WAL-mode file `flockmq.db` in `data_dir`, shared by every process
of the host), "postgres" (the `flockmq` schema of the database `dsn` names, for
brokers that share their state over the network; `store.postgres`, imported
only then) or "memory" (`--persistence none`: same behaviour, state dies with
the process). Writes from an event loop go through a `Committer`, which group-
commits them on its own thread. See `store.base` for the records, the ops and
the invariants every backend keeps.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from .memory import MemoryStore

if TYPE_CHECKING:
    from .committer import Committer
    from .sqlite import DB_NAME, SqliteStore

# Imported on first use (module __getattr__, PEP 562): sqlite3 in the
# processes that open the SQLite store, asyncio and threading in those that
# commit. An acceptor (no store) and `flockmq serve` (which only checks the
# store) import neither; each costs a process 1-10 MiB of RSS.
_LAZY = {"Committer": ".committer", "DB_NAME": ".sqlite", "SqliteStore": ".sqlite"}

KINDS = ("sqlite", "postgres", "memory")

__all__ = [
    "DB_NAME",
    "DURABILITIES",
    "FORMAT_VERSION",
    "KINDS",
    "Committer",
    "DeleteInboundQos2",
    "DeleteMessage",
    "DeleteRetained",
    "DeleteSession",
    "DeleteSubscription",
    "ExpireRetained",
    "InboundQos2Record",
    "MemoryStore",
    "MessageRecord",
    "Op",
    "PruneSeenQos2",
    "PutInboundQos2",
    "PutMessage",
    "PutRetained",
    "PutSeenQos2",
    "PutSession",
    "PutSubscription",
    "RetainedRecord",
    "SeenQos2Record",
    "SessionRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "SubscriptionRecord",
    "UpdateMessage",
    "Writer",
    "open_store",
]


def open_store(
    kind: str,
    data_dir: str,
    durability: str = "process",
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    dsn: str = "",
) -> Store:
    """Open the host's store. `kind`: "sqlite", "postgres" (`dsn`: its libpq
    connection string; `data_dir` unused) or "memory" (`data_dir` unused);
    `durability`: "process" or "power" (PostgreSQL commits meet both). StoreError
    when it cannot be opened."""
    if durability not in DURABILITIES:
        raise StoreError(f"durability must be one of {DURABILITIES}, not {durability!r}")
    if kind == "sqlite":
        from .sqlite import open_sqlite

        return open_sqlite(data_dir, durability, busy_timeout_ms=busy_timeout_ms)
    if kind == "postgres":
        from .postgres import open_postgres  # psycopg: loaded by the brokers that use it

        return open_postgres(dsn)
    if kind == "memory":
        return MemoryStore()
    raise StoreError(f"store kind must be one of {KINDS}, not {kind!r}")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
