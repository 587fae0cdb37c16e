"""Heartbeats between hosts (flockmq/app/heartbeats.py): two network
namespaces each run a node's heartbeats (heartbeat_node.py); cutting one
host's link makes each declare the other dead after the timeout, restoring
it makes them live again (a rejoin, the same incarnation), and a node
killed and started again rejoins with its new incarnation. The time from
the cut to the declaration is printed, not asserted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

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
