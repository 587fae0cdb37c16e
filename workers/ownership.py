"""Shard ownership of a session worker on the PostgreSQL store (issue 14): the
worker serves its shard ONLY while it holds the shard's advisory lock
(store/shard_locks.py) and the shard's newest write epoch
(store/shard_fence.py).

Life of a worker with `store = "postgres"` (workers/process.py):

1. Standby. The bus is up, but the shard is not: every envelope gets the
   standby's answer (workers/standby.py: CONNECT refused with 0x88 Server
   unavailable); a restarted worker that does not get its lock at the first
   try announces itself, so the connections it served are closed. Off the
   event loop (every ShardLocks call is a blocking round trip), it tries
   the lock every RETRY_INTERVAL (jittered); a database it cannot reach is
   retried the same way. A lock it gets while
   another broker serves other shards of the namespace is given back at
   once: one broker serves them all (workers/serving_broker.py; not in a
   cluster, whose nodes each serve their own shards: Config.placement); and so is
   a lock of a namespace recorded for another worker count than this
   broker's (store/shard_fence.py `OtherWorkerCount`: logged as an error
   naming both counts). Counted (`standby_retries`, `standby_other_broker`,
   `standby_other_worker_count`) and logged once per standby spell.
2. Claim. With the lock held, it takes a new epoch for the shard (waiting
   for any commit of the previous owner still in flight), and only then
   loads the shard's sessions and starts serving: WORKER_UP, subscriptions
   to the router, the shard's envelopes to the shard. A worker that waited
   as a standby first says so in its WORKER_UP (`after_standby`): another
   broker may have served meanwhile, and the router reloads the retained
   messages it changed (router/retained_reload.py).
3. Owner. A thread checks the lock every CHECK_INTERVAL (`ShardLocks.check`:
   one round trip asking pg_locks, which also proves the connection alive).
   Every commit of the worker's writer checks the epoch in its own
   transaction. The same thread sees whether another broker holds shards
   too, and gives way if the rule says so (serving_broker.py `must_yield`).
4. Lost. The check fails (LocksLost: the connection dropped, its backend was
   terminated, PostgreSQL restarted; or the server does not list the lock),
   or a commit was refused for a newer epoch (NotOwner), or it gives way to
   another broker: the process logs
   why and exits at once (`os._exit(EXIT_NOT_OWNER)`, from whichever thread
   saw it, whatever the loop is doing): no store write, no acknowledgement
   and no delivery after that. The supervisor starts it again, at step 1.

What is guaranteed: a commit that succeeded is seen by every later owner's
load (the epoch fence: store/shard_fence.py); so an acknowledgement, which
the worker sends only after its commit succeeded, is never a lie, even when
it leaves in the instant between a lock loss and the exit. A commit refused
by the fence gives no acknowledgement (its failed form goes instead,
flockmq/runtime.py), and the process exits.

What is not: between the lock loss and the exit (at most CHECK_INTERVAL
plus a round trip, or the commit that finds the new epoch), the old owner
may still send what needs no commit: QoS 0 copies, and QoS 1/2 messages
already stored to its connected clients, whose acknowledgements it can no
longer record: the new owner sends them again (with DUP), as after any
worker restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, NoReturn

import psycopg

from flockmq.config import Config
from flockmq.store import StoreError
from flockmq.store.shard_fence import NotOwner, OtherWorkerCount, ShardFence, claim_shard
from flockmq.store.shard_locks import ShardLocks

from .serving_broker import lock_node, may_take, must_yield, others

log = logging.getLogger("flockmq.worker")

RETRY_INTERVAL: Final = 0.5  # seconds between two tries of a standby
CHECK_INTERVAL: Final = 1.0  # seconds between two checks of an owner
CLOSE_WAIT: Final = 15.0  # seconds `close` waits for a claim in flight
EXIT_NOT_OWNER: Final = 75  # EX_TEMPFAIL: the supervisor restarts it (a standby)


class ShardOwnership:
    def __init__(self, config: Config, index: int, counters: Counter[str]) -> None:
        self.index = index
        self.counters = counters
        if not config.broker_id:
            raise ValueError("broker_id: not set (the supervisor makes it at start)")
        self.broker = config.broker_id
        self.owner = f"{self.broker} pid {os.getpid()} worker {index}"
        self.workers = config.workers
        # a cluster (Config.placement): each node's workers take their own
        # shards, so the "one broker serves them all" rule (serving_broker.py)
        # does not apply; the lock and the epoch fence do
        self.clustered = config.placement is not None
        self._told_count = False
        self.locks = ShardLocks(
            config.postgres_dsn, lock_node(self.broker, index), namespace=config.shard_namespace
        )
        # Counted from the lock's thread too: every key exists before (a
        # key added there while the loop walks the counters would break it).
        for name in (
            "standby_retries",
            "standby_store_errors",
            "standby_other_broker",
            "standby_other_worker_count",
            "shard_lock_checks",
        ):
            counters[name] += 0
        self.fence: ShardFence | None = None
        self.standby = True
        # it waited as a standby before it got the shard: another broker may
        # have served meanwhile (its router reloads retained messages)
        self.after_standby = False
        # One thread for the lock's connection while a standby; the watch
        # thread takes it over once the shard is claimed (never both).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="flockmq-shard-lock")
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None
        # Held by a claim in flight (the executor's thread, on the lock's
        # connection): `close` waits for it before closing that connection.
        self._claiming = threading.Lock()

    # --- standby -------------------------------------------------------------------
    async def acquire(self, on_standby: Callable[[], None]) -> ShardFence:
        """Wait, as a standby, until this process holds the lock and a new
        epoch: the fence its commits carry from now on. `on_standby` is
        called once, on the loop, when the first try did not get it."""
        loop = asyncio.get_running_loop()
        waiting = False
        last_error = ""
        while True:
            try:
                fence = await loop.run_in_executor(self._executor, self._try_claim)
            except StoreError as e:
                fence = None
                self.counters["standby_store_errors"] += 1
                if str(e) != last_error:  # once per new error, not every retry
                    last_error = str(e)
                    log.warning("worker %d: standby: %s", self.index, e)
            if fence is not None:
                self.fence = fence
                self.standby = False
                self.after_standby = waiting
                log.info(
                    "worker %d: holds shard %d's lock (namespace %d), epoch %d%s",
                    self.index,
                    self.index,
                    fence.namespace,
                    fence.epoch,
                    ": standby no more" if waiting else "",
                )
                return fence
            if not waiting:
                waiting = True
                on_standby()
                log.warning(
                    "worker %d: standby: shard %d is served by another broker (its lock,"
                    " or other shards of the namespace, are held elsewhere); CONNECTs"
                    " refused with Server unavailable; retrying every %.1f s",
                    self.index,
                    self.index,
                    RETRY_INTERVAL,
                )
            self.counters["standby_retries"] += 1
            # jittered: two brokers' workers started together do not keep
            # taking and giving back their locks in step (serving_broker.py)
            await asyncio.sleep(RETRY_INTERVAL * random.uniform(0.8, 1.2))

    def _try_claim(self) -> ShardFence | None:
        """The lock, then a new epoch (on the lock's own connection); None
        while another session holds the lock, or once `close` was called."""
        with self._claiming:
            if self._stop.is_set():
                return None  # closing: never connect again
            return self._claim()

    def _claim(self) -> ShardFence | None:
        locks = self.locks
        if not locks.acquire(self.index):
            return None
        if not self.clustered and not may_take(self.broker, locks.holders()):
            locks.release(self.index)  # another broker serves: stay a standby
            self.counters["standby_other_broker"] += 1
            return None
        conn = locks.conn
        assert conn is not None
        try:
            return claim_shard(conn, locks.namespace, self.index, self.owner, self.workers)
        except OtherWorkerCount as e:
            locks.release(self.index)  # never serve shards sized for another count
            self.counters["standby_other_worker_count"] += 1
            if not self._told_count:  # once per process: it is a configuration error
                self._told_count = True
                log.error("worker %d: standby: %s", self.index, e)
            return None
        except psycopg.Error as e:
            locks.close()  # the lock goes with the session: try it all again
            raise StoreError(f"cannot claim shard {self.index}: {e}") from e

    def taken(self, task: asyncio.Task[None]) -> None:
        """The task that waited for the shard ended: a failure there (a bug)
        would leave the worker a standby for ever; it exits instead."""
        if not task.cancelled() and task.exception() is not None:
            self.lose(f"taking the shard failed: {task.exception()!r}")

    # --- owner ---------------------------------------------------------------------
    def watch(self) -> None:
        """Check the lock every CHECK_INTERVAL from a thread of its own (the
        event loop may be busy: the check is not delayed by it)."""
        self._executor.shutdown(wait=True)
        self._watch = threading.Thread(target=self._check_loop, name="flockmq-shard-watch")
        self._watch.daemon = True
        self._watch.start()

    def _check_loop(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            try:
                held = self.locks.check()
            except StoreError as e:  # LocksLost, or a failed query on a live connection
                self.lose(f"its shard lock could not be confirmed: {e}")
            if self.index not in held:
                self.lose(f"PostgreSQL does not list its lock on shard {self.index}")
            self.counters["shard_lock_checks"] += 1
            if not self.clustered:
                self._check_alone()

    def _check_alone(self) -> None:
        """Shards split between this broker and another: one gives way
        (serving_broker.py)."""
        try:
            holders = self.locks.holders()
        except StoreError as e:
            self.lose(f"its shard lock could not be confirmed: {e}")
        if must_yield(self.broker, holders):
            shared = dict(others(self.broker, holders))
            self.lose(f"another broker serves shards of this namespace too {shared}: giving way")

    def not_owner(self, e: NotOwner) -> None:
        """A fenced commit was refused (store/postgres.py, the writer's thread)."""
        self.lose(str(e))

    def lose(self, why: str) -> NoReturn:
        """Stop acting as the shard's owner at once: exit, from any thread."""
        log.error(
            "worker %d: no longer the owner of shard %d: %s; exiting (the supervisor"
            " restarts it as a standby)",
            self.index,
            self.index,
            why,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(EXIT_NOT_OWNER)

    def close(self) -> None:
        """A clean stop (after the last commit): the lock goes with its session.
        A claim in flight on the executor's thread is let finish first (its
        round trips are bounded by the connection's connect_timeout and
        tcp_user_timeout), so the connection is never closed under it and no
        claim starts after (it sees `_stop`); past CLOSE_WAIT it is left to
        the process's exit, which closes the connection anyway."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(CHECK_INTERVAL + 15)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if not self._claiming.acquire(timeout=CLOSE_WAIT):
            log.warning("worker %d: a shard claim is still in flight at exit", self.index)
            return
        try:
            self.locks.close()
        finally:
            self._claiming.release()

    def gauges(self) -> dict[str, int]:
        fence = self.fence
        return {"shard_standby": int(self.standby), "shard_epoch": fence.epoch if fence else 0}
