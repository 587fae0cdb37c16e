"""Reloading the retained messages from the store when this broker serves
again after a standby spell (PostgreSQL store, issue 14).

Why: a router loads the retained messages at its start and, after that,
keeps them up to date from the publishes it routes. While its broker stands
by (another broker serves the shards of the namespace: workers/ownership.py),
the retained messages change on the other broker only; the snapshot of this
router goes stale. So when a worker of this broker starts serving after a
standby spell (WORKER_UP with `after_standby`), the router reads them again.

- The read (`Store.load_retained`: every row) runs on a thread of its own,
  never on the event loop; one at a time. WORKER_UPs that come while one
  runs (every worker of the broker takes its shard within a second) ask
  for one more read after it, not one each.
- What this router writes while the read runs wins: the topics it stored,
  deleted or expired meanwhile (`Router.retained_touched`) keep their
  in-memory message, the rest takes the store's (`merge_reloaded`). A
  message the router stored before the read started is in the store (or
  its commit is in flight: then it is in `retained_touched` only if it came
  after the start; the window is the committer's, milliseconds).
- A read that fails is tried again after RETRY_INTERVAL, logged once per
  new error and counted (`retained_reload_errors`); reloads are counted
  (`retained_reloads`).
- Bounded: at most one read in flight and one wanted; the merge walks the
  router's retained messages once on the loop (O(n) in the retained count,
  like the load at start).
- Until a reload has finished, a new subscriber may still get the stale
  snapshot's retained messages (milliseconds to seconds after the takeover,
  depending on the count).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from flockmq.store import RetainedRecord, Store, StoreError

from .router import Router, _durable

log = logging.getLogger("flockmq.router")

RETRY_INTERVAL: Final = 1.0  # seconds before a failed read is tried again


def begin_reload(router: Router) -> None:
    """The read starts now: from here on, topics this router writes are kept."""
    router.retained_reload_wanted = False
    router.retained_touched = set()


def merge_reloaded(router: Router, records: list[RetainedRecord]) -> None:
    """The store's retained messages replace the router's, but for the topics
    it wrote since `begin_reload`. $SYS topics (never stored) stay."""
    touched = router.retained_touched or set()
    router.retained_touched = None
    fresh = [rec for rec in records if _durable(rec.topic) and rec.topic not in touched]
    names = {rec.topic for rec in records}
    gone = [
        topic
        for topic, _msg in router.retained.items()
        if _durable(topic) and topic not in names and topic not in touched
    ]
    for topic in gone:
        router.retained.set(topic, None)
    router.load_retained(fresh)
    router.counters["retained_reloads"] += 1
    log.info(
        "router: retained messages reloaded after a standby spell: %d from the store,"
        " %d gone, %d written here meanwhile kept",
        len(fresh),
        len(gone),
        len(touched),
    )


class RetainedReload:
    """The process's side: polled after every pass of the loop (`poll`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, router: Router, store: Store) -> None:
        self.loop = loop
        self.router = router
        self.store = store  # used by this class's one thread only, once started
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="flockmq-retained-reload")
        self._running = False
        self._last_error = ""
        router.counters["retained_reloads"] += 0
        router.counters["retained_reload_errors"] += 0

    def poll(self) -> None:
        if not self.router.retained_reload_wanted or self._running:
            return
        self._running = True
        begin_reload(self.router)
        future = self.loop.run_in_executor(self._executor, self.store.load_retained)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[list[RetainedRecord]]) -> None:
        self._running = False
        router = self.router
        if future.cancelled():
            router.retained_touched = None
            return
        error = future.exception()
        if error is None:
            merge_reloaded(router, future.result())
        elif isinstance(error, StoreError):
            router.retained_touched = None
            router.counters["retained_reload_errors"] += 1
            if str(error) != self._last_error:
                self._last_error = str(error)
                log.warning("router: retained messages not reloaded: %s; retrying", error)
            self.loop.call_later(RETRY_INTERVAL, self._retry)
            return
        else:  # a bug: said once, not retried (the snapshot stays as it was)
            router.retained_touched = None
            log.error("router: retained messages not reloaded", exc_info=error)
        self.poll()  # WORKER_UPs that came meanwhile

    def _retry(self) -> None:
        self.router.retained_reload_wanted = True
        self.poll()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
