"""A cluster node's heartbeats alone (flockmq/app/heartbeats.py), run inside
a network namespace by tests/cluster/test_heartbeats_netns.py. Prints one
line per event: `ready`, `heard NODE INCARNATION` (the first heartbeat of
each incarnation of a node), `joined NODE`, `left NODE`, `restarted NODE`;
with CURVE keys (`keys=DIR` among the arguments: flockmq/curve.py, the
keys of every node named) also `refused N` when its ZAP handler has
refused N handshakes in all, and `handshake-failed ENDPOINT` when its SUB's
handshake with a peer failed (a socket monitor's event: the test's, not the
node's).

    python heartbeat_node.py ME INCARNATION INTERVAL TIMEOUT [keys=DIR] NAME=ENDPOINT...
"""

from __future__ import annotations

import sys
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from flockmq import curve
from flockmq.app.heartbeats import Heartbeats
from flockmq.membership import Membership

HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def main() -> None:
    me, incarnation, interval, timeout, *pairs = sys.argv[1:]
    endpoints = dict(pair.split("=", 1) for pair in pairs)
    keys_dir = endpoints.pop("keys", None)
    keys = None
    if keys_dir is not None:
        addresses = {
            name: ep.removeprefix("tcp://").rpartition(":")[0] for name, ep in endpoints.items()
        }
        keys = curve.read_node_keys(keys_dir, me, addresses)
    membership = Membership(me, list(endpoints), float(interval), float(timeout), time.monotonic())
    peers = {name: ep for name, ep in endpoints.items() if name != me}
    link = Heartbeats(
        membership, int(incarnation), f"broker-{me}", endpoints[me], peers, curve=keys
    )
    monitor: zmq.Socket[Any] = link.sub.get_monitor_socket(HANDSHAKE_FAILED)
    known = {name: -1 for name in peers}
    refused = 0
    print("ready", flush=True)
    while True:
        for change in link.poll():
            print(change.kind.value, change.node, flush=True)
        for name in peers:
            incarnation_now = membership.incarnation(name)
            if incarnation_now != known[name]:
                known[name] = incarnation_now
                print("heard", name, incarnation_now, flush=True)
        if curve.refused() != refused:
            refused = curve.refused()
            print("refused", refused, flush=True)
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            print("handshake-failed", event["endpoint"].decode(), flush=True)
        link.wait(0.02)


if __name__ == "__main__":
    main()
