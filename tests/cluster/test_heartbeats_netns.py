"""Heartbeats between hosts (flockmq/app/heartbeats.py): two network
namespaces each run a node's heartbeats (heartbeat_node.py); cutting one
host's link makes each declare the other dead after the timeout, restoring
it makes them live again (a rejoin, the same incarnation), and a node
killed and started again rejoins with its new incarnation. The time from
the cut to the declaration is printed, not asserted.

With CURVE (flockmq/curve.py): an impostor at a node's address, with keys
of its own or with none, is never heard, and a node counts the impostor's
own connection to it as refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from flockmq.curve import write_keypair

from .conftest import MakeHosts
from .lines import ChildLines

NODE = str(Path(__file__).with_name("heartbeat_node.py"))
PORT = 15650  # any port: every namespace has all of its own
INTERVAL, TIMEOUT = 0.2, 1.0
WAIT = 30.0


def test_a_cut_link_is_a_death_and_a_restored_one_a_rejoin(netns_hosts: MakeHosts) -> None:
    a, b = netns_hosts("a", "b")
    endpoints = [f"a=tcp://{a.address}:{PORT}", f"b=tcp://{b.address}:{PORT}"]

    def start(host_name: str, incarnation: int) -> ChildLines:
        host = a if host_name == "a" else b
        args = [sys.executable, NODE, host_name, str(incarnation), str(INTERVAL), str(TIMEOUT)]
        child = ChildLines(host.popen([*args, *endpoints], stdout=subprocess.PIPE, text=True))
        child.expect("ready")
        return child

    node_a, node_b = start("a", 1), start("b", 1)
    try:
        node_a.expect("heard b 1", WAIT)
        node_b.expect("heard a 1", WAIT)

        b.link_down()
        cut = time.monotonic()
        node_a.expect("left b", WAIT)
        print(f"\nlink down -> declared dead in {time.monotonic() - cut:.2f} s (timeout {TIMEOUT})")
        node_b.expect("left a", WAIT)

        b.link_up()
        up = time.monotonic()
        node_a.expect("joined b", WAIT)
        node_b.expect("joined a", WAIT)
        print(f"link up -> live again in {time.monotonic() - up:.2f} s")

        node_b.stop()  # kill -9, then a new incarnation at the same address
        node_a.expect("left b", WAIT)
        node_b = start("b", 2)
        node_a.expect("joined b", WAIT)
        node_a.expect("heard b 2", WAIT)
    finally:
        node_a.stop()
        node_b.stop()


def test_an_impostor_at_a_node_s_address_without_its_key_is_never_heard(
    netns_hosts: MakeHosts, tmp_path: Path
) -> None:
    a, b, c = netns_hosts("a", "b", "c")
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    for name in ("a", "b", "c"):
        write_keypair(str(keys), name)
    # the impostor knows the nodes' public keys (they are no secret) but
    # not c's secret one: it has a keypair of its own
    stranger.mkdir()
    for name in ("a", "b"):
        shutil.copy(keys / f"{name}.key", stranger)
    write_keypair(str(stranger), "c")
    endpoints = [f"{h.name}=tcp://{h.address}:{PORT}" for h in (a, b, c)]

    def start(host_name: str, keys_arg: list[str]) -> ChildLines:
        host = {"a": a, "b": b, "c": c}[host_name]
        args = [sys.executable, NODE, host_name, "1", str(INTERVAL), str(TIMEOUT), *keys_arg]
        child = ChildLines(host.popen([*args, *endpoints], stdout=subprocess.PIPE, text=True))
        child.expect("ready")
        return child

    node_a = start("a", [f"keys={keys}"])
    node_b = start("b", [f"keys={keys}"])
    impostors: list[ChildLines] = []
    try:
        node_a.expect("heard b 1", WAIT)  # the nodes' own keys work
        # c is not running: an impostor at its address, with keys of its own
        impostors.append(start("c", [f"keys={stranger}"]))
        # a's SUB failed to shake hands with it; its SUB was refused by a, and counted
        expect_all(node_a, [f"handshake-failed tcp://{c.address}:{PORT}", "refused 1"])
        impostors.pop().stop()
        # and one that speaks no CURVE at all
        impostors.append(start("c", []))
        node_a.expect(f"handshake-failed tcp://{c.address}:{PORT}", WAIT)
        node_b.expect(f"handshake-failed tcp://{c.address}:{PORT}", WAIT)
        never = ("heard c", "joined c")
        assert not [line for line in node_a.seen + node_b.seen if line.startswith(never)]
    finally:
        for child in (node_a, node_b, *impostors):
            child.stop()


def expect_all(child: ChildLines, prefixes: list[str]) -> None:
    """A line starting with each of `prefixes`, in any order."""
    wanted = set(prefixes)
    deadline = time.monotonic() + WAIT
    while wanted:
        line = child.expect("", max(deadline - time.monotonic(), 0.0))
        wanted = {p for p in wanted if not line.startswith(p)}
