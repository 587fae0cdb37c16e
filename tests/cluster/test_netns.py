"""The network-namespace harness (tests/cluster/netns.py) does what issue
14's cluster tests need: hosts that reach each other over ZeroMQ, reach the
tests' PostgreSQL, run the real broker, and can have their network cut and
restored; and it leaves nothing behind, even after a killed run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.broker import Broker
from tests.e2e.clients import unique

from .conftest import MakeHosts
from .lines import ChildLines
from .netns import (
    PREFIX,
    NetnsUnavailable,
    Network,
    ip,
    record_path,
    remove_leftovers,
    state_lock,
    unavailable,
)

PROBE = str(Path(__file__).with_name("mqtt_probe.py"))
BUS_PORT = 15601  # any port: every namespace has all of its own

PULL = """
import sys, zmq
pull = zmq.Context().socket(zmq.PULL)
pull.bind(sys.argv[1])
print("bound", flush=True)
print("got", pull.recv().decode() if pull.poll(20_000) else "nothing", flush=True)
"""
PUSH = """
import sys, zmq
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.setsockopt(zmq.LINGER, 20_000)  # term() waits until it is delivered (or 20 s)
push.connect(sys.argv[1])
push.send(sys.argv[2].encode())
push.close()
ctx.term()  # not left to the exit: pyzmq does not terminate a context then, and the message is lost
"""


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def test_a_push_in_one_host_reaches_a_pull_bound_on_another(netns_hosts: MakeHosts) -> None:
    a, b = netns_hosts("a", "b")
    endpoint = f"tcp://{b.address}:{BUS_PORT}"
    pull = ChildLines(b.popen(python("-c", PULL, endpoint), stdout=subprocess.PIPE, text=True))
    try:
        pull.expect("bound")
        push = a.run(*python("-c", PUSH, endpoint, f"hello from {a.address}"))
        assert push.returncode == 0, push.stderr
        assert pull.expect("got") == f"got hello from {a.address}"
    finally:
        pull.stop()


def test_a_host_cannot_bind_another_hosts_address(netns_hosts: MakeHosts) -> None:
    """The hosts are separate: B's address exists only inside B."""
    a, b = netns_hosts("a", "b")
    out = a.run(*python("-c", PULL, f"tcp://{b.address}:{BUS_PORT}"), timeout=30)
    assert out.returncode != 0 and "Cannot assign requested address" in out.stderr


def test_the_tests_postgres_accepts_a_host_through_the_bridge(
    netns_hosts: MakeHosts, netns_postgres_dsn: str
) -> None:
    (b,) = netns_hosts("b")
    query = (
        "import sys, psycopg;"
        "c = psycopg.connect(sys.argv[1], connect_timeout=10);"
        "print(c.execute('SELECT host(inet_client_addr())').fetchone()[0])"
    )
    out = b.run(*python("-c", query, netns_postgres_dsn))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == b.address  # it came from B, not from the root namespace


def test_the_broker_in_one_host_serves_another_and_a_cut_link_is_noticed(
    netns_hosts: MakeHosts, tmp_path: Path
) -> None:
    a, b = netns_hosts("a", "b")
    config = tmp_path / "flockmq.toml"  # not loopback: anonymous clients allowed on purpose
    config.write_text("allow_anonymous = true\n")
    broker = Broker(
        tmp_path / "a",
        1,
        1,
        ["--config", str(config)],
        host=a.address,
        port=1883,
        command_prefix=a.command(),
    )
    probe = None
    try:
        broker.start()
        assert broker.pid in a.pids()  # `ip netns exec` exec'd it: the PID is the supervisor's
        probe = ChildLines(
            b.popen(
                python(PROBE, a.address, "1883", unique("probe")),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        probe.expect("connected Success")
        probe.expect("received round-0")
        a.link_down()
        # nothing can come from A, not even a FIN: only paho's keepalive sees it
        assert probe.expect("disconnected") == "disconnected Keep alive timeout"
        a.link_up()
        probe.send("reconnect")
        probe.expect("connected Success", timeout=30)  # the probe tries for 20 s
        probe.expect("received round-1")  # the same broker, still running, serves it again
        assert broker.proc is not None and broker.proc.poll() is None
    finally:
        if probe is not None:
            probe.stop()
        broker.stop()


def test_removing_a_host_ends_what_runs_inside(netns_network: Network) -> None:
    host = netns_network.add_host("gone")
    sleeper = host.popen(["sleep", "600"])
    deadline = time.monotonic() + 10  # `ip netns exec` enters the namespace once it runs
    while sleeper.pid not in host.pids():
        assert time.monotonic() < deadline, "sleep never ran inside the namespace"
        time.sleep(0.01)
    netns_network.remove_host("gone")
    assert sleeper.wait(10) == -9
    assert host.netns not in ip("netns", "list")
    assert host.veth not in ip("-o", "link", "show")


def test_leftovers_of_a_dead_session_go_and_a_live_sessions_stay(
    netns_network: Network, netns_hosts: MakeHosts
) -> None:
    (mine,) = netns_hosts("mine")
    dead = "zzdea"  # a session whose process is gone (a PID that is not running)
    pid = max(psutil.pids()) + 10_000
    with open(record_path(dead), "w") as fh:
        json.dump({"pid": pid, "started": 0.0, "subnet": "10.213.255.0/24"}, fh)
    ip("netns", "add", f"{PREFIX}{dead}-x")
    ip("link", "add", f"{PREFIX}{dead}br", "type", "bridge")
    orphan = "zzorf"  # no record at all (killed between creating and recording)
    ip("link", "add", f"{PREFIX}{orphan}br", "type", "bridge")
    with state_lock():
        removed = remove_leftovers()
    assert sorted(removed) == sorted(
        [f"{PREFIX}{dead}-x", f"{PREFIX}{dead}br", f"{PREFIX}{orphan}br"]
    )
    assert not os.path.exists(record_path(dead))
    links = ip("-o", "link", "show")
    assert netns_network.bridge in links and mine.veth in links
    assert mine.netns in ip("netns", "list")


@pytest.mark.parametrize("name", ["", "a-b", "toolongname"])
def test_a_host_name_must_fit_in_an_interface_name(netns_network: Network, name: str) -> None:
    with pytest.raises(ValueError, match="1-8 letters or digits"):
        netns_network.add_host(name)


def test_where_it_cannot_run_it_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fixtures' skip message says (and that Network.create stops
    before any `ip` command)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable() == "creating network namespaces (ip netns add) needs root"
    with pytest.raises(NetnsUnavailable, match="needs root"):
        Network.create()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert unavailable() == "iproute2's `ip` is missing (apt-get install iproute2)"
