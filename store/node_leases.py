"""The liveness leases of a cluster's nodes in PostgreSQL (issue 14): the
I/O of flockmq/dead_nodes.py, which decides from them whether a survivor
without a quorum may evict a dead node.

A cluster node's supervisor renews its lease every heartbeat interval
(flockmq/app/cluster_moves.py, on a thread of its own: every call here is
a blocking round trip) through one `NodeLeases`, on one connection of its
own: a row of `flockmq.node_leases` (the schema's format 3, created or
migrated by store/postgres.py at the first connection) keyed by (lock
namespace, node name), holding the node's incarnation, its broker id and
`renewed_at`, the SERVER's now(). In the same transaction it reads every
row of the namespace with its age by the server's clock, so no clock of
a node is ever compared with another's.

Invariants:

- A renewal never goes back in incarnations: a row written by a newer
  incarnation of the node (it restarted; this one is a zombie) is left
  alone, and the renewal reports `renewed` False, so a superseded
  supervisor never evicts anyone.
- Any failure (no server, a broken connection, a missing table) is one
  StoreError naming the database; the connection is dropped and the next
  round connects again. The connection sets libpq and server keepalives
  (store/shard_locks.py `holder_conninfo`): a cut link fails a round
  within ~10 s instead of hanging it.
"""

from __future__ import annotations

from typing import Any

import psycopg

from flockmq.dead_nodes import Lease

from .base import StoreError
from .postgres import _first_line, _prepare, describe_dsn
from .shard_locks import holder_conninfo

RENEW_SQL = (
    "INSERT INTO flockmq.node_leases AS l (namespace, node, incarnation, broker, renewed_at)"
    " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (namespace, node) DO UPDATE SET"
    " incarnation = excluded.incarnation, broker = excluded.broker,"
    " renewed_at = excluded.renewed_at WHERE l.incarnation <= excluded.incarnation"
    " RETURNING 1"
)
READ_SQL = (
    "SELECT node, incarnation, broker, extract(epoch FROM now() - renewed_at)::float8"
    " FROM flockmq.node_leases WHERE namespace = %s"
)


class NodeLeases:
    def __init__(self, dsn: str, namespace: int, node: str, incarnation: int, broker: str) -> None:
        """Connects at the first `renew`."""
        self.name = describe_dsn(dsn)
        self.conninfo = holder_conninfo(dsn, f"flockmq lease {node}")
        self.namespace, self.node = namespace, node
        self.incarnation, self.broker = incarnation, broker
        self.conn: psycopg.Connection[Any] | None = None

    def renew(self) -> tuple[bool, dict[str, Lease]]:
        """Renew this node's lease; whether it was renewed (False: a newer
        incarnation holds the row) and every node's lease, read after it.
        StoreError when the database cannot be reached or used."""
        try:
            conn = self._connection()
            with conn.transaction():
                params = (self.namespace, self.node, self.incarnation, self.broker)
                renewed = conn.execute(RENEW_SQL, params).fetchone() is not None
                rows = conn.execute(READ_SQL, (self.namespace,)).fetchall()
        except psycopg.Error as e:
            self.close()
            raise StoreError(
                f"renewing the lease of {self.node} on {self.name}: {_first_line(e)}"
            ) from e
        except StoreError:  # the schema could not be prepared (store/postgres.py)
            self.close()
            raise
        leases = {
            str(node): Lease(int(inc), str(broker), float(age)) for node, inc, broker, age in rows
        }
        return renewed, leases

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            conn = psycopg.connect(self.conninfo, autocommit=True)
            try:
                _prepare(conn, self.name)  # the table may not exist yet: format 3
            except BaseException:
                conn.close()
                raise
            self.conn = conn
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
