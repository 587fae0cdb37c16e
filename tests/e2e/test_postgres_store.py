"""The real broker on the PostgreSQL store (`--store postgres --postgres-dsn`),
against the tests' own server (tests/postgres.py; skipped, saying why, where
it cannot run): a persistent session's queued QoS 1 messages, its
subscription and the retained messages survive a restart — on a fresh data
dir, so they can only have come from PostgreSQL — and kill -9 of a worker
under QoS 1/2 load loses no acknowledged message (test_durability's kill test,
run on this store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from flockmq.app.probe import free_port

from . import test_durability as durability
from .broker import Broker, MakeBroker
from .clients import Client, unique
from .load import WAIT


@pytest.fixture
def brokers() -> Iterator[list[Broker]]:
    started: list[Broker] = []
    yield started
    for b in started:
        b.stop()


def start(data_dir: Path, dsn: str, started: list[Broker]) -> Broker:
    broker = Broker(
        data_dir, 2, 2, ["--store", "postgres", "--postgres-dsn", dsn], port=free_port()
    )
    started.append(broker)
    return broker.start()


def test_a_restart_restores_queued_messages_and_retained_ones_from_postgres(
    tmp_path: Path, postgres_dsn: str, brokers: list[Broker]
) -> None:
    broker = start(tmp_path / "first", postgres_dsn, brokers)
    base = unique("pg")
    sub_id = unique("pgsub")
    sub = Client(broker.port, sub_id, clean=False)
    sub.connect()
    sub.subscribe(f"{base}/q/#", 1)
    sub.disconnect()
    pub = Client(broker.port)
    pub.connect()
    sent = [f"m{i}".encode() for i in range(10)]
    for payload in sent:
        pub.publish(f"{base}/q/1", payload, 1)  # waits for PUBACK: committed
    pub.publish(f"{base}/ret", b"retained", 1, retain=True)
    pub.disconnect()
    assert broker.stop() == 0
    assert not (tmp_path / "first" / "flockmq.db").exists(), "wrote the SQLite store"
    with psycopg.connect(postgres_dsn) as conn:
        queued = conn.execute(
            "SELECT count(*) FROM flockmq.messages WHERE client_id = %s", (sub_id,)
        ).fetchone()
        assert queued == (len(sent),)

    again = start(tmp_path / "second", postgres_dsn, brokers)  # nothing on disk
    sub = Client(again.port, sub_id, clean=False)
    assert sub.connect().session_present, "the persistent session was not restored"
    assert [m.payload for m in sub.expect(len(sent), timeout=WAIT)] == sent
    pub = Client(again.port)
    pub.connect()
    pub.publish(f"{base}/q/1", b"after-restart", 1)  # the subscription survived
    assert sub.expect(1)[0].payload == b"after-restart"
    sub.disconnect()
    reader = Client(again.port)
    reader.connect()
    reader.subscribe(f"{base}/ret", 1)
    (retained,) = reader.expect(1)
    assert (retained.payload, retained.qos, retained.retain) == (b"retained", 1, True)
    reader.disconnect()
    pub.disconnect()


@pytest.fixture
def postgres_config(tmp_path: Path, postgres_dsn: str) -> str:
    path = tmp_path / "flockmq.toml"
    path.write_text(f'{durability.CONFIG}store = "postgres"\npostgres_dsn = "{postgres_dsn}"\n')
    return str(path)


@pytest.mark.parametrize("qos", [1, 2])
def test_no_acknowledged_message_is_lost_when_a_worker_is_killed(
    make_broker: MakeBroker,
    postgres_config: str,
    brokers: list[Broker],
    postgres_dsn: str,
    qos: int,
) -> None:
    durability.test_no_acknowledged_message_is_lost_when_a_process_is_killed(
        make_broker, postgres_config, brokers, "worker", qos
    )
    with psycopg.connect(postgres_dsn) as conn:  # it ran on PostgreSQL
        assert conn.execute("SELECT count(*) FROM flockmq.sessions").fetchone() != (0,)
