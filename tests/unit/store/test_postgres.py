"""The PostgreSQL schema (store/postgres.py), against the tests' own server
(tests/postgres.py; these tests skip, saying why, where it cannot run):
created when missing, never overwritten when it is not ours, refused when
newer, migrated when older; synchronous_commit on for every connection; the
DSN's password never in a message; a connection that broke is reopened;
several processes opening and writing a fresh database at once."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

from flockmq.store import (
    Committer,
    PutMessage,
    PutRetained,
    PutSession,
    RetainedRecord,
    StoreError,
    open_store,
)
from flockmq.store import postgres as pg
from tests.postgres import PostgresServer


def everyone(_cid: str) -> bool:
    return True


def raw(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dsn, autocommit=True)


def test_a_new_database_gets_the_schema_and_its_format(postgres_dsn: str) -> None:
    with open_store("postgres", "", "process", dsn=postgres_dsn) as s:
        assert s.path.startswith("postgresql://postgres@127.0.0.1:")
        s.apply([PutRetained("t", b"x", 0, None)])
    with raw(postgres_dsn) as conn:
        assert conn.execute("SELECT key, value FROM flockmq.meta").fetchall() == [
            ("format_version", pg.FORMAT_VERSION)
        ]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'flockmq'"
            )
        }
        assert tables == {
            "meta",
            "sessions",
            "subscriptions",
            "messages",
            "inbound_qos2",
            "qos2_seen",
            "retained",
            "shard_owners",
            "shard_namespaces",
            "node_leases",
        }


def test_every_connection_commits_synchronously(postgres_dsn: str) -> None:
    """Even where the database's default says otherwise."""
    with raw(postgres_dsn) as conn:
        dbname = conn.info.dbname
        conn.execute(f"ALTER DATABASE {dbname} SET synchronous_commit = off")
    with open_store("postgres", "", "power", dsn=postgres_dsn) as s:
        assert isinstance(s, pg.PostgresStore)
        assert s._open_conn().execute("SHOW synchronous_commit").fetchone() == ("on",)
        w = s.writer()
        w.apply([PutRetained("t", b"x", 0, None)])
        assert isinstance(w, pg.PostgresWriter)
        assert w._conn is not None
        assert w._conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        w.close()


def test_other_tables_of_the_database_are_left_alone(postgres_dsn: str) -> None:
    with raw(postgres_dsn) as conn:
        conn.execute("CREATE TABLE public.sessions (x integer)")
        conn.execute("INSERT INTO public.sessions VALUES (1)")
    with open_store("postgres", "", "process", dsn=postgres_dsn) as s:
        s.apply([PutSession("c", 1, 5, None, None)])
        assert [r.client_id for r in s.load_sessions(everyone)] == ["c"]
    with raw(postgres_dsn) as conn:
        assert conn.execute("SELECT x FROM public.sessions").fetchall() == [(1,)]


def test_a_newer_format_is_refused_and_left_untouched(postgres_dsn: str) -> None:
    with open_store("postgres", "", "process", dsn=postgres_dsn) as s:
        s.apply([PutSession("c", 1, 5, None, None)])
        name = s.path
    newer = pg.FORMAT_VERSION + 1
    with raw(postgres_dsn) as conn:
        conn.execute("UPDATE flockmq.meta SET value = %s", (newer,))
    with pytest.raises(StoreError) as err:
        open_store("postgres", "", "process", dsn=postgres_dsn)
    assert str(err.value) == (
        f"{name} was written by a newer flockmq (format {newer};"
        f" this one reads up to {pg.FORMAT_VERSION})"
    )
    with raw(postgres_dsn) as conn:
        assert conn.execute("SELECT value FROM flockmq.meta").fetchone() == (newer,)
        assert conn.execute("SELECT count(*) FROM flockmq.sessions").fetchone() == (1,)


def test_a_foreign_flockmq_schema_is_refused_and_left_untouched(postgres_dsn: str) -> None:
    with raw(postgres_dsn) as conn:
        conn.execute("CREATE SCHEMA flockmq")
        conn.execute("CREATE TABLE flockmq.precious (x integer)")
        conn.execute("INSERT INTO flockmq.precious VALUES (1)")
    with pytest.raises(StoreError, match="not a flockmq store"):
        open_store("postgres", "", "process", dsn=postgres_dsn)
    with raw(postgres_dsn) as conn:
        assert conn.execute("SELECT x FROM flockmq.precious").fetchall() == [(1,)]


def test_an_older_format_is_migrated_in_place(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The migration path, with a format made up for the test."""
    with open_store("postgres", "", "process", dsn=postgres_dsn) as s:
        s.apply([PutRetained("kept", b"1", 0, None)])
        name = s.path
    current = pg.FORMAT_VERSION
    monkeypatch.setattr(pg, "FORMAT_VERSION", current + 1)
    monkeypatch.setitem(
        pg.MIGRATIONS, current + 1, ("ALTER TABLE flockmq.retained ADD COLUMN note text",)
    )
    with (
        caplog.at_level(logging.WARNING),
        open_store("postgres", "", "process", dsn=postgres_dsn) as s,
    ):
        assert s.load_retained() == [RetainedRecord("kept", b"1", 0, None)]
    assert f"{name}: migrating the store from format {current} to {current + 1}" in caplog.text
    with raw(postgres_dsn) as conn:
        assert conn.execute("SELECT value FROM flockmq.meta").fetchone() == (current + 1,)
        assert conn.execute("SELECT note FROM flockmq.retained").fetchall() == [(None,)]


def test_an_unreachable_server_names_the_database_not_the_password(
    postgres_server: PostgresServer,
) -> None:
    dsn = f"host=127.0.0.1 port={postgres_server.port} dbname=nosuchdb user=u password=s3cret"
    with pytest.raises(StoreError) as err:
        open_store("postgres", "", "process", dsn=dsn)
    message = str(err.value)
    assert message.startswith(
        f"cannot connect to postgresql://u@127.0.0.1:{postgres_server.port}/nosuchdb:"
    )
    assert "s3cret" not in message
    with pytest.raises(StoreError, match="not a valid PostgreSQL connection string"):
        open_store("postgres", "", "process", dsn="host=x port")
    with pytest.raises(StoreError, match="needs a connection string"):
        open_store("postgres", "", "process", dsn="")


def test_redact_dsn() -> None:
    assert pg.redact_dsn("host=h dbname=d") == "host=h dbname=d"
    redacted = pg.redact_dsn("postgresql://u:s3cret@h:5/d")
    assert "s3cret" not in redacted
    assert "password=********" in redacted
    assert pg.describe_dsn("postgresql://u:s3cret@h:5/d") == "postgresql://u@h:5/d"


def test_a_broken_connection_fails_one_batch_then_recovers(postgres_dsn: str) -> None:
    """The committer's connection is terminated by the server (a restart, a
    failover): the batch that meets it fails, the next one reconnects."""
    store = open_store("postgres", "", "process", dsn=postgres_dsn)

    async def commit(committer: Committer, topic: str) -> StoreError | None:
        done: asyncio.Future[StoreError | None] = asyncio.get_running_loop().create_future()
        committer.submit([PutRetained(topic, b"x", 0, None)], done.set_result)
        return await done

    async def main() -> None:
        committer = Committer(store)
        assert await commit(committer, "first") is None
        with raw(postgres_dsn) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        error = await commit(committer, "lost")
        assert isinstance(error, StoreError)
        assert store.path in str(error)
        assert await commit(committer, "after") is None
        committer.close()

    try:
        asyncio.run(main())
        # The store's own connection was terminated too: it reconnects.
        with pytest.raises(StoreError):
            store.load_retained()
        assert [r.topic for r in store.load_retained()] == ["after", "first"]
    finally:
        store.close()


WRITER_SCRIPT = textwrap.dedent(
    """
    import sys
    from flockmq.store import PutMessage, PutSession, open_store

    dsn, name = sys.argv[1], sys.argv[2]
    store = open_store("postgres", "", "process", dsn=dsn)
    for i in range(40):  # one short transaction each, interleaved with the others
        store.apply([
            PutSession(f"{name}-{i}", 10, 5, None, None),
            PutMessage(f"{name}-{i}", 1, "t", name.encode(), 1, False, None),
        ])
    store.close()
    """
)


def test_processes_create_and_share_a_fresh_database(postgres_dsn: str) -> None:
    """The router and each worker open the (empty) database at once: the schema
    is created once, and each writes its own rows."""
    names = ["w0", "w1", "w2", "router"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER_SCRIPT, postgres_dsn, n], stderr=subprocess.PIPE
        )
        for n in names
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    with open_store("postgres", "", "process", dsn=postgres_dsn) as s:
        assert len(s.load_sessions(everyone)) == 40 * len(names)
        w1 = s.load_sessions(lambda cid: cid.startswith("w1-"))
        assert len(w1) == 40
        assert {m.payload for r in w1 for m in r.messages} == {b"w1"}
        s.apply([PutMessage("w1-0", 2, "t", b"more", 1, False, None)])
        assert [m.seq for m in s.load_sessions(lambda c: c == "w1-0")[0].messages] == [1, 2]


def test_without_postgresql_the_tests_skip_saying_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Where PostgreSQL is missing or does not start, its tests skip (never
    fail, never pass unseen), and the skip says why."""
    from tests import postgres as server

    monkeypatch.setattr(server, "find_bindir", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        server.start_server()
    monkeypatch.setattr(server, "find_bindir", lambda: "/bin")  # no initdb there
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL is not installed"):
        server.start_server()
    broken = tmp_path / "initdb"
    broken.write_text("#!/bin/sh\necho initdb: broken >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(server, "find_bindir", lambda: str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL did not start"):
        server.start_server()


def test_a_transaction_that_loses_a_deadlock_is_retried_whole(
    postgres_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds row "b" and then wants row "a", which the store's
    batch holds while it waits for "b": PostgreSQL aborts the store's
    transaction (the other side waits 30 s before it checks for deadlocks),
    and the store retries it whole once the other side is done."""
    store = open_store("postgres", "", "process", dsn=postgres_dsn)
    store.apply([PutRetained("a", b"0", 0, None), PutRetained("b", b"0", 0, None)])
    other = psycopg.connect(postgres_dsn)
    other.execute("SET deadlock_timeout = '30s'")
    other.execute("UPDATE flockmq.retained SET payload = 'other' WHERE topic = 'b'")
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            store.apply([PutRetained("a", b"store", 0, None), PutRetained("b", b"store", 0, None)])
        except BaseException as e:
            errors.append(e)

    with caplog.at_level(logging.INFO, logger="flockmq.store"):
        thread = threading.Thread(target=apply)
        thread.start()
        with raw(postgres_dsn) as watch:
            for _ in range(200):  # until the store waits for "b"
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = 'flockmq' AND wait_event_type = 'Lock'"
                ).fetchone()
                if waiting == (1,):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the store never waited for the other transaction's row")
        other.execute("UPDATE flockmq.retained SET payload = 'other' WHERE topic = 'a'")
        other.commit()
        thread.join(30)
    other.close()
    try:
        assert errors == []
        assert "transaction retried" in caplog.text
        assert {r.topic: r.payload for r in store.load_retained()} == {
            "a": b"store",
            "b": b"store",
        }
    finally:
        store.close()


def test_writer_connections_set_the_servers_keepalives(postgres_dsn: str) -> None:
    """A dead host's in-flight commit holds its shard's fence row until the
    server ends its session: within seconds (SERVER_KEEPALIVES), not the
    kernel's two hours; a -c of the DSN's own options still wins."""
    with open_store("postgres", "", "power", dsn=postgres_dsn) as s:
        w = s.writer()
        w.apply([PutRetained("t", b"x", 0, None)])
        assert isinstance(w, pg.PostgresWriter) and w._conn is not None
        shown = {name: w._conn.execute(f"SHOW {name}").fetchone() for name in pg.SERVER_KEEPALIVES}
        w.close()
    assert shown == {
        "tcp_keepalives_idle": ("4",),
        "tcp_keepalives_interval": ("2",),
        "tcp_keepalives_count": ("3",),
        "tcp_user_timeout": ("10000",),
    }
    theirs = postgres_dsn + " options='-c tcp_keepalives_count=7'"
    with open_store("postgres", "", "power", dsn=theirs) as s:
        w = s.writer()
        w.apply([PutRetained("u", b"x", 0, None)])
        assert isinstance(w, pg.PostgresWriter) and w._conn is not None
        count = w._conn.execute("SHOW tcp_keepalives_count").fetchone()
        w.close()
    assert count == ("7",)
