"""store/node_leases.py against the tests' own PostgreSQL (tests/postgres.py;
skipped, saying why, where it cannot run): the first renewal creates the
schema; each renewal reads every node's lease of its namespace with its age
by the server's clock; an older incarnation never overwrites a newer one
(and learns it is superseded); an unreachable database is a StoreError,
and the next renewal connects again."""

from __future__ import annotations

import psycopg
import pytest

from flockmq.store import StoreError
from flockmq.store.node_leases import NodeLeases

NS = 21


def test_renewals_read_every_nodes_lease_of_the_namespace_aged_by_the_server(
    postgres_dsn: str,
) -> None:
    a = NodeLeases(postgres_dsn, NS, "a", 10, "broker-a")
    b = NodeLeases(postgres_dsn, NS, "b", 20, "broker-b")
    other = NodeLeases(postgres_dsn, NS + 1, "c", 1, "broker-c")  # another cluster
    try:
        assert a.renew()[0] and other.renew()[0]
        renewed, leases = b.renew()
        assert renewed and set(leases) == {"a", "b"}
        assert (leases["a"].incarnation, leases["a"].broker) == (10, "broker-a")
        assert 0.0 <= leases["b"].age < leases["a"].age < 10.0
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # a fell silent 60 s ago
            conn.execute(
                "UPDATE flockmq.node_leases SET renewed_at = now() - interval '60 s'"
                " WHERE node = 'a'"
            )
        assert 59.0 < b.renew()[1]["a"].age < 70.0
        assert a.renew()[1]["a"].age < 1.0  # renewed again
    finally:
        for holder in (a, b, other):
            holder.close()


def test_an_older_incarnation_does_not_overwrite_a_newer_one(postgres_dsn: str) -> None:
    old = NodeLeases(postgres_dsn, NS, "a", 10, "broker-old")
    new = NodeLeases(postgres_dsn, NS, "a", 11, "broker-new")
    try:
        assert old.renew()[0] and new.renew()[0]
        renewed, leases = old.renew()
        assert not renewed  # superseded: it must evict nobody
        assert (leases["a"].incarnation, leases["a"].broker) == (11, "broker-new")
    finally:
        old.close()
        new.close()


def test_an_unreachable_database_is_a_store_error_and_the_next_renewal_reconnects(
    postgres_dsn: str,
) -> None:
    leases = NodeLeases(postgres_dsn, NS, "a", 10, "broker-a")
    try:
        assert leases.renew()[0]
        assert leases.conn is not None
        pid = leases.conn.info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        with pytest.raises(StoreError, match="renewing the lease of a"):
            leases.renew()
        assert leases.renew()[0]  # connected again
    finally:
        leases.close()
    nowhere = NodeLeases("host=127.0.0.1 port=1 connect_timeout=2", NS, "a", 1, "x")
    with pytest.raises(StoreError):
        nowhere.renew()
