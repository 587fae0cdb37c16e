"""A cluster node's heartbeats alone (flockmq/app/heartbeats.py), run inside
a network namespace by tests/cluster/test_heartbeats_netns.py. Prints one
line per event: `ready`, `heard NODE INCARNATION` (the first heartbeat of
each incarnation of a node), `joined NODE`, `left NODE`, `restarted NODE`.

    python heartbeat_node.py ME INCARNATION INTERVAL TIMEOUT NAME=ENDPOINT...
"""

from __future__ import annotations

import sys
import time

from flockmq.app.heartbeats import Heartbeats
from flockmq.membership import Membership


def main() -> None:
    me, incarnation, interval, timeout, *pairs = sys.argv[1:]
    endpoints = dict(pair.split("=", 1) for pair in pairs)
    membership = Membership(me, list(endpoints), float(interval), float(timeout), time.monotonic())
    peers = {name: ep for name, ep in endpoints.items() if name != me}
    link = Heartbeats(membership, int(incarnation), f"broker-{me}", endpoints[me], peers)
    known = {name: -1 for name in peers}
    print("ready", flush=True)
    while True:
        for change in link.poll():
            print(change.kind.value, change.node, flush=True)
        for name in peers:
            incarnation_now = membership.incarnation(name)
            if incarnation_now != known[name]:
                known[name] = incarnation_now
                print("heard", name, incarnation_now, flush=True)
        link.wait(0.02)


if __name__ == "__main__":
    main()
