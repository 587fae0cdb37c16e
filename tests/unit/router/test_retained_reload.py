"""A router reloads the retained messages when a worker of its broker serves
after a standby spell (router/retained_reload.py): the store's messages
replace its stale snapshot, but what it wrote itself while reading wins; the
read runs off the loop, one at a time, and a failed one is tried again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from flockmq import envelopes as env
from flockmq.router import retained_reload
from flockmq.router.retained_reload import RetainedReload, begin_reload, merge_reloaded
from flockmq.router.router import Router
from flockmq.store import MemoryStore, PutRetained, RetainedRecord, StoreError, open_store

from .test_router import route, take

TIMEOUT = 20.0


def payloads(router: Router) -> dict[str, bytes]:
    return {topic: msg.payload for topic, msg in router.retained.items()}


def test_only_a_worker_up_after_a_standby_spell_asks_for_a_reload() -> None:
    router = Router()
    router.handle([env.Kind.WORKER_UP, 0, 0, False])  # a broker's first start
    assert not router.retained_reload_wanted
    router.handle([env.Kind.WORKER_UP, 1, 0, True])
    assert router.retained_reload_wanted


def test_the_store_replaces_a_stale_snapshot_but_not_what_this_router_wrote() -> None:
    router = Router()
    router.load_retained(
        [RetainedRecord(t, p, 0, None) for t, p in [("a", b"old"), ("b", b"old"), ("c", b"x")]]
    )
    route(router, "$SYS/broker/uptime", b"5", retain=True)  # never stored: stays
    take(router)
    router.take_durable()
    begin_reload(router)
    route(router, "c", b"mine", retain=True)  # written while the read runs
    route(router, "e", b"mine", retain=True)
    take(router)
    records = [  # what the other broker left in the store
        RetainedRecord("a", b"new", 1, None),
        RetainedRecord("c", b"theirs", 0, None),
        RetainedRecord("d", b"new", 0, None),
    ]
    merge_reloaded(router, records)
    assert payloads(router) == {
        "$SYS/broker/uptime": b"5",
        "a": b"new",  # replaced
        "c": b"mine",  # written here meanwhile: kept ("b": deleted there)
        "d": b"new",
        "e": b"mine",
    }
    assert router.retained_touched is None and router.counters["retained_reloads"] == 1


class GatedStore(MemoryStore):
    """load_retained waits for `gate` (the read is in flight), fails the
    first `failures` times, and records the thread it ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.failures = 0
        self.threads: list[str] = []

    def load_retained(self) -> list[RetainedRecord]:
        self.threads.append(threading.current_thread().name)
        assert self.gate.wait(TIMEOUT)
        if self.failures:
            self.failures -= 1
            raise StoreError("server gone")
        return super().load_retained()


async def until(what: str, done: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not done():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)


def test_reads_run_off_the_loop_one_at_a_time_and_are_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retained_reload, "RETRY_INTERVAL", 0.01)

    async def main() -> None:
        store = GatedStore()
        store.apply([PutRetained("t", b"v1", 0, None)])
        router = Router()
        reload = RetainedReload(asyncio.get_running_loop(), router, store)
        try:
            store.failures = 2
            store.gate.set()
            router.retained_reload_wanted = True
            reload.poll()
            await until("a read after two failed", lambda: router.counters["retained_reloads"] == 1)
            assert router.counters["retained_reload_errors"] == 2 and len(store.threads) == 3
            assert payloads(router) == {"t": b"v1"}
            store.gate.clear()
            router.retained_reload_wanted = True
            reload.poll()
            await until("the next read in flight", lambda: len(store.threads) == 4)
            for _ in range(3):  # three more WORKER_UPs while it reads
                router.retained_reload_wanted = True
                reload.poll()
            store.apply([PutRetained("t", b"v2", 0, None)])
            store.gate.set()
            await until("two more reads", lambda: router.counters["retained_reloads"] == 3)
            assert len(store.threads) == 5  # one for the three WORKER_UPs, not three
            assert payloads(router) == {"t": b"v2"}
            assert all(name.startswith("flockmq-retained-reload") for name in store.threads)
        finally:
            reload.close()

    asyncio.run(main())


def test_a_reload_from_postgres_sees_what_another_broker_stored(
    postgres_dsn: str, tmp_path: Path
) -> None:
    store = open_store("postgres", "", "process", dsn=postgres_dsn)

    async def main() -> None:
        router = Router()  # this broker's router, at its start
        router.load_retained(store.load_retained())
        store.apply([PutRetained("T", b"while standing by", 1, None)])  # the other broker
        reload = RetainedReload(asyncio.get_running_loop(), router, store)
        try:
            router.handle([env.Kind.WORKER_UP, 0, 1, True])
            reload.poll()
            await until("a reload", lambda: router.counters["retained_reloads"] == 1)
        finally:
            reload.close()
        assert payloads(router) == {"T": b"while standing by"}

    try:
        asyncio.run(main())
    finally:
        store.close()
