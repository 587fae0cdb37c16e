"""A cluster worker tells every router and acceptor of the cluster where
its shard is served (issue 14): a SHARD_AT (flockmq/envelopes.py) once it
has claimed the shard's epoch, before its WORKER_UP (so a process
repoints its pipe to this node before it re-sends anything for the shard),
then again every ANNOUNCE_INTERVAL, so a process started later, or cut off
while the shard moved, learns it (flockmq/shard_directory.py).

Only in a cluster (Config.placement); the announcements go on the pipes
the worker has anyway (to every router and every acceptor of the broker),
a few dozen bytes each.
"""

from __future__ import annotations

import asyncio

from flockmq import runtime
from flockmq.bus import Bus
from flockmq.config import Config
from flockmq.envelopes import ShardAt
from flockmq.shard_directory import ShardAnnouncer


def send_shard_at(bus: Bus, config: Config, at: ShardAt) -> None:
    for router in range(config.routers):
        bus.send(runtime.router(router), at)
    for acceptor in range(config.acceptors):
        bus.send(runtime.acceptor(acceptor), at)


_running: set[asyncio.Task[None]] = set()  # the re-sends, referenced until the process ends


def announce_claim(bus: Bus, config: Config, shard: int, epoch: int) -> ShardAnnouncer:
    """The first SHARD_AT of a claim (sent with the rest of this pass: call
    it before the WORKER_UP is sent), and the re-sends from now on."""
    placement = config.placement
    assert placement is not None, "a cluster's worker only"
    loop = asyncio.get_running_loop()
    announcer = ShardAnnouncer(shard, placement.node)
    send_shard_at(bus, config, announcer.claimed(epoch, loop.time()))
    task = loop.create_task(keep_announcing(bus, config, announcer))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return announcer


async def keep_announcing(bus: Bus, config: Config, announcer: ShardAnnouncer) -> None:
    """The periodic re-sends, until cancelled (the process's end)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(announcer.interval / 4)
        at = announcer.tick(loop.time())
        if at is not None:
            send_shard_at(bus, config, at)
