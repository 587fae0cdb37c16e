"""Shard ownership on the PostgreSQL store (issue 14, workers/ownership.py):
real brokers on one database of the tests' own PostgreSQL (tests/postgres.py;
skipped, saying why, where it cannot run), real paho clients.

- Two brokers, A then B, on one database with the same worker count: A
  serves, B's workers are standbys (CONNECT refused with 0x88 Server
  unavailable, 3.1.1 return code 3; `flockmq status` says standby). kill -9
  of every process of A: B's workers take the shards, and a persistent
  session resumes on B with session present and every message queued for
  it while it was offline. A, started again, is the standby.
- A worker whose lock connection is terminated (pg_terminate_backend) exits
  and comes back, under QoS 1 and 2 load, losing no acknowledged message
  (test_durability's load, with this as its kill).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest

from flockmq.app.probe import free_port
from flockmq.frontend.codec import Connack, Connect

from . import test_durability as durability
from .broker import FLOCKMQ, Broker, MakeBroker
from .clients import Client, RawClient, unique, wait_for
from .load import WAIT, Publisher, id_on_shard

WORKERS = 2


@pytest.fixture
def brokers() -> Iterator[list[Broker]]:
    started: list[Broker] = []
    yield started
    for b in started:
        b.stop()


def launch(
    data_dir: Path, dsn: str, started: list[Broker], *extra: str, workers: int = WORKERS
) -> Broker:
    broker = Broker(
        data_dir,
        2,
        workers,
        ["--store", "postgres", "--postgres-dsn", dsn, *extra],
        port=free_port(),
    )
    started.append(broker)
    return broker.launch()


def worker_standby(broker: Broker) -> dict[int, bool]:
    """Per worker index, whether it is a standby, as `flockmq status` says
    (workers that did not answer are left out)."""
    done = subprocess.run(
        [FLOCKMQ, "status", "--data-dir", str(broker.data_dir), "--json", "--interval", "0.2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return {}  # not up yet (no discovery file, no control socket)
    rows: list[dict[str, Any]] = json.loads(done.stdout)["processes"]
    return {r["index"]: r["standby"] for r in rows if r["role"] == "worker" and "standby" in r}


def wait_standby(broker: Broker, standby: bool) -> None:
    want = dict.fromkeys(range(broker.workers), standby)
    wait_for(lambda: worker_standby(broker) == want, WAIT, f"every worker standby={standby}")


def try_connect(port: int, client_id: str, **options: Any) -> tuple[Client, bool, int]:
    """A paho CONNECT: the client, session present, and the CONNACK's reason
    code (as MQTT 5 numbers it: 3.1.1's return code 3 is 0x88)."""
    client = Client(port, client_id, **options)
    flags, rc = client_connack(client)
    if rc != 0:
        client.paho.loop_stop()
    return client, flags.session_present, rc.value


def client_connack(client: Client) -> tuple[mqtt.ConnectFlags, Any]:
    kwargs: dict[str, Any] = {}
    if client.protocol == 5:
        kwargs["clean_start"] = client.clean
    client.paho.connect(client.host, client.port, client.keepalive, **kwargs)
    client.paho.loop_start()
    return client.connack.get(timeout=WAIT)


def kill_every_process(broker: Broker) -> tuple[float, list[psutil.Process]]:
    """kill -9 of the supervisor and every child, by PID: the time of the
    kill, and the children (reaped by `reap` once the failover is timed)."""
    children = broker.children()
    assert len(children) >= 1 + WORKERS + broker.acceptors, children
    when = time.monotonic()
    for pid in [broker.pid, *(c.pid for c in children)]:
        os.kill(pid, signal.SIGKILL)
    return when, children


def reap(broker: Broker, children: list[psutil.Process]) -> None:
    assert broker.proc is not None
    broker.proc.wait(WAIT)
    _gone, alive = psutil.wait_procs(children, timeout=WAIT)
    assert not alive, alive


def assert_refused_as_standby(broker: Broker) -> None:
    """MQTT 5: CONNACK 0x88 Server unavailable; 3.1.1: return code 3; at
    once, not after the client's timeout."""
    _client, present, rc = try_connect(broker.port, unique("v5"), protocol=5)
    assert (present, rc) == (False, 0x88)
    raw = RawClient(broker.port, level=4)
    raw.send(Connect(unique("v311"), 4, True, 30))
    got = raw.expect_closed(timeout=WAIT)
    assert [type(p) for p in got] == [Connack], got
    assert isinstance(got[0], Connack) and got[0].reason_code == 3
    raw.close()


def test_a_standby_broker_takes_the_shards_when_the_owner_dies(
    tmp_path: Path, postgres_dsn: str, brokers: list[Broker]
) -> None:
    a = launch(tmp_path / "a", postgres_dsn, brokers)
    a.wait_ready(WAIT)
    wait_standby(a, False)
    b = launch(tmp_path / "b", postgres_dsn, brokers)
    wait_standby(b, True)
    assert_refused_as_standby(b)
    assert "standby: shard 0 is served by another broker" in b.log()

    # A persistent session on A, a QoS 1 subscription, messages queued offline.
    topic = unique("own")
    sub_id = unique("sub")
    sub = Client(a.port, sub_id, clean=False)
    sub.connect()
    sub.subscribe(f"{topic}/#", 1)
    sub.disconnect()
    pub = Client(a.port)
    pub.connect()
    sent = [f"m{i}".encode() for i in range(20)]
    for payload in sent:
        pub.publish(f"{topic}/q", payload, 1)  # PUBACK: committed
    # After B's router loaded the retained messages (at its start): B's
    # router reloads them when its workers take the shards over.
    pub.publish(f"{topic}-retained", b"set on A while B stood by", 1, retain=True)
    pub.paho.loop_stop()

    killed, children = kill_every_process(a)
    while True:  # B's shards are taken: the first CONNACK that is not 0x88
        resumed, present, rc = try_connect(b.port, sub_id, clean=False)
        if rc == 0:
            failover = time.monotonic() - killed
            break
        assert rc == 0x88, rc
        assert time.monotonic() - killed < WAIT, "B never took the shards"
    print(f"failover: kill -9 of A to B's CONNACK with session present: {failover:.3f} s")
    reap(a, children)
    assert present, "the session was not found on B"
    got = resumed.expect(len(sent), timeout=WAIT)
    assert sorted(m.payload for m in got) == sorted(sent)
    assert [m.payload for m in got] == sent, "out of order"
    resumed.expect_nothing(0.3)
    wait_standby(b, False)
    resumed.disconnect()
    # B's router reloads the retained messages (off its loop): a new
    # subscriber gets A's, once the reload is done.
    wait_for(lambda: "retained messages reloaded" in b.log(), WAIT, "B's router reloads")
    reader = Client(b.port)
    reader.connect()
    reader.subscribe(f"{topic}-retained", 1)
    assert [m.payload for m in reader.expect(1, timeout=WAIT)] == [b"set on A while B stood by"]
    reader.disconnect()

    # A comes back: the standby now.
    again = launch(tmp_path / "a", postgres_dsn, brokers)
    wait_standby(again, True)
    assert_refused_as_standby(again)
    back, present, rc = try_connect(b.port, sub_id, clean=False)
    assert (present, rc) == (True, 0)
    back.disconnect()


def test_a_broker_with_another_worker_count_stays_a_standby(
    tmp_path: Path, postgres_dsn: str, brokers: list[Broker]
) -> None:
    """The namespace is recorded for the first broker's count (a session's
    shard is crc32 % workers: the write fence holds only for one count):
    with the serving broker gone, a broker of another count still stands
    by, saying why, and one of the same count serves."""
    a = launch(tmp_path / "a", postgres_dsn, brokers)
    a.wait_ready(WAIT)
    wait_standby(a, False)
    a.stop()
    b = launch(tmp_path / "b", postgres_dsn, brokers, workers=WORKERS + 1)
    wait_standby(b, True)
    wait_for(
        lambda: f"sharded for {WORKERS} workers, this broker runs {WORKERS + 1}" in b.log(),
        WAIT,
        "the error naming both counts",
    )
    assert_refused_as_standby(b)
    b.stop()
    again = launch(tmp_path / "a", postgres_dsn, brokers)
    wait_standby(again, False)


def test_a_worker_of_the_serving_broker_that_lost_its_lock_gets_it_back_not_the_standby(
    tmp_path: Path, postgres_dsn: str, brokers: list[Broker]
) -> None:
    """One broker serves every shard (workers/serving_broker.py): the
    standby does not take shard 0 while A still serves shard 1."""
    a = launch(tmp_path / "a", postgres_dsn, brokers)
    a.wait_ready(WAIT)
    wait_standby(a, False)
    b = launch(tmp_path / "b", postgres_dsn, brokers)
    wait_standby(b, True)
    sub_id = id_on_shard("sub", 0, WORKERS)
    sub = Client(a.port, sub_id, clean=False)
    sub.connect()
    sub.subscribe("own/#", 1)
    sub.disconnect()

    old = a.pid_of("worker", 0)
    backend = lock_backend_of_worker(postgres_dsn, 0, a)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone() == (True,)
    a.wait_restarted("worker", 0, old, timeout=WAIT)
    wait_standby(a, False)  # worker 0 of A serves again
    assert worker_standby(b) == dict.fromkeys(range(WORKERS), True)
    assert "worker 0: no longer the owner of shard 0" in a.log()
    back, present, rc = try_connect(a.port, sub_id, clean=False)
    assert (present, rc) == (True, 0)
    back.disconnect()


def lock_backend_of_worker(dsn: str, index: int, broker: Broker | None = None) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s"
            " AND datname = current_database()",
            (f"flockmq shards {broker_of(broker)} worker {index}",),
        ).fetchall()
    assert len(rows) == 1, rows
    return int(rows[0][0])


@pytest.mark.parametrize("qos", [1, 2])
def test_a_worker_whose_lock_connection_is_terminated_exits_and_loses_nothing(
    make_broker: MakeBroker,
    tmp_path: Path,
    postgres_dsn: str,
    brokers: list[Broker],
    qos: int,
) -> None:
    config = tmp_path / "flockmq.toml"
    config.write_text(f'{durability.CONFIG}store = "postgres"\npostgres_dsn = "{postgres_dsn}"\n')

    killed: list[Broker] = []

    def terminate_lock(broker: Broker, publishers: list[Publisher]) -> None:
        killed.append(broker)
        old = broker.pid_of("worker", 0)
        backend = lock_backend_of_worker(postgres_dsn, 0)
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            done = conn.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()
            assert done == (True,)
        broker.wait_restarted("worker", 0, old, timeout=WAIT)
        # Back as the owner (nobody else holds the shard): a new lock connection.
        wait_for(lambda: backend_or_none(postgres_dsn) not in (None, backend), WAIT, "a new lock")

    durability.test_no_acknowledged_message_is_lost_when_a_process_is_killed(
        make_broker, str(config), brokers, "worker", qos, kill_with=terminate_lock
    )
    (broker,) = killed
    assert "worker 0: no longer the owner of shard 0" in broker.log()


def broker_of(broker: Broker | None) -> str:
    """The broker's id in its lock connections' names (any broker: %)."""
    if broker is None:
        return "%"
    ids = re.findall(r"broker id (\S+) \(its workers' shard lock connections\)", broker.log())
    assert ids, "the supervisor logs its broker id at start"
    return str(ids[-1])  # a broker started again in the same data dir has a new one


def backend_or_none(dsn: str) -> int | None:
    try:
        return lock_backend_of_worker(dsn, 0)
    except AssertionError:
        return None
