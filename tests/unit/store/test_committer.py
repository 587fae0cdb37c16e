"""Committer: group commit in submission order, callbacks on the loop thread,
a failed commit fails only its batch and the next one succeeds.

Failures are provoked in ways that also fail as root (chmod does not stop
root): another connection holding SQLite's write lock past the busy timeout,
and a file-size limit (RLIMIT_FSIZE) in a subprocess standing in for a full
disk."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from flockmq.store import (
    Committer,
    DeleteRetained,
    Op,
    PutMessage,
    PutRetained,
    PutSession,
    Store,
    StoreError,
    open_store,
)
from flockmq.store.sqlite import db_path


def everyone(_cid: str) -> bool:
    return True


async def _commit(committer: Committer, ops: list[Op]) -> StoreError | None:
    """Submit and wait for the callback."""
    done: asyncio.Future[StoreError | None] = asyncio.get_running_loop().create_future()
    committer.submit(ops, done.set_result)
    return await done


def test_batches_apply_in_order_and_call_back_on_the_loop(store: Store) -> None:
    results: list[tuple[int, StoreError | None, int]] = []

    async def main() -> None:
        loop_thread = threading.get_ident()
        committer = Committer(store)
        all_done = asyncio.get_running_loop().create_future()

        def on_done(i: int, error: StoreError | None) -> None:
            results.append((i, error, threading.get_ident()))
            if len(results) == 200:
                all_done.set_result(None)

        store.apply([PutSession("c", 10, 5, None, None)])
        for i in range(200):
            # Each submission overwrites retained "r" and adds message i: the
            # last write must win, and every message must be there.
            ops: list[Op] = [
                PutRetained("r", str(i).encode(), 0, None),
                PutMessage("c", i, "t", str(i).encode(), 1, False, None),
            ]
            committer.submit(ops, functools.partial(on_done, i))
            if i % 50 == 0:
                await asyncio.sleep(0)  # let some batches go separately
        await all_done
        committer.close()
        assert {t for _, _, t in results} == {loop_thread}
        assert committer.batches < 200  # grouped

    asyncio.run(main())
    assert [i for i, _, _ in results] == list(range(200))
    assert all(e is None for _, e, _ in results)
    assert store.load_retained()[0].payload == b"199"
    (s,) = store.load_sessions(everyone)
    assert [m.seq for m in s.messages] == list(range(200))


def test_release_keeps_the_order_of_what_waits_for_commits(store: Store) -> None:
    """A pass with nothing to write must not overtake an earlier pass still
    being committed (a QoS 2 publish routed after its commit, then one from
    a clean session with no ops: same publisher, same order)."""
    order: list[str] = []

    async def main() -> None:
        committer = Committer(store)
        done = asyncio.get_running_loop().create_future()
        committer.release([PutRetained("r", b"1", 0, None)], lambda e: order.append("first"))
        committer.release([], lambda e: order.append("second"))
        # append's None is the result on purpose: the future is set once "third" is in.
        committer.release([], lambda e: done.set_result(order.append("third")))  # type: ignore[func-returns-value]
        assert order == []  # all three wait for the first commit
        await done
        # With nothing outstanding, a release without ops runs at once.
        committer.release([], lambda e: order.append("now"))
        assert order[-1] == "now"
        committer.close()

    asyncio.run(main())
    assert order == ["first", "second", "third", "now"]


def test_flush_sync_and_close_drain_pending(store: Store) -> None:
    committer = Committer(store)
    for i in range(100):
        committer.submit([PutRetained(f"t/{i}", b"x", 0, None)])
    assert committer.flush_sync(timeout=10)
    assert committer.pending == 0
    assert len(store.load_retained()) == 100
    for i in range(100):
        committer.submit([DeleteRetained(f"t/{i}")])
    committer.close()
    assert store.load_retained() == []
    with pytest.raises(StoreError, match="closed"):
        committer.submit([DeleteRetained("x")])


def test_lock_timeout_fails_the_batch_then_recovers(tmp_path: Path) -> None:
    """SQLITE_BUSY past busy_timeout (another process holding the write lock)."""
    data = str(tmp_path / "data")
    store = open_store("sqlite", data, "process", busy_timeout_ms=100)
    blocker = sqlite3.connect(db_path(data), isolation_level=None)

    async def main() -> None:
        committer = Committer(store)
        blocker.execute("BEGIN IMMEDIATE")
        errors = await asyncio.gather(
            *(_commit(committer, [PutRetained(f"lost/{i}", b"1", 0, None)]) for i in range(3))
        )
        for error in errors:  # every waiting submission hears of the failure
            assert isinstance(error, StoreError)
            assert db_path(data) in str(error)
            assert "locked" in str(error)
        blocker.execute("ROLLBACK")
        assert await _commit(committer, [PutRetained("kept", b"2", 0, None)]) is None
        committer.close()
        assert committer.failures >= 1

    try:
        asyncio.run(main())
        assert [r.topic for r in store.load_retained()] == ["kept"]
    finally:
        blocker.close()
        store.close()


DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, resource, signal, sys
    from flockmq.store import Committer, PutRetained, StoreError, open_store

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
    data = sys.argv[1]
    store = open_store("sqlite", data, "power")
    big = os.urandom(4 << 20)

    async def commit(committer, ops):
        done = asyncio.get_running_loop().create_future()
        committer.submit(ops, done.set_result)
        return await done

    async def main():
        committer = Committer(store)
        assert await commit(committer, [PutRetained("small", b"s", 0, None)]) is None
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # a 1 MiB disk
        error = await commit(committer, [PutRetained("big", big, 0, None)])
        assert isinstance(error, StoreError), error
        assert data in str(error), error
        print("failed:", error)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
        assert await commit(committer, [PutRetained("big", big, 0, None)]) is None
        committer.close()

    asyncio.run(main())
    topics = [(r.topic, len(r.payload)) for r in store.load_retained()]
    assert topics == [("big", len(big)), ("small", 1)], topics
    store.close()
    print("ok")
    """
)


def test_disk_full_fails_the_batch_then_recovers(tmp_path: Path) -> None:
    """A file-size limit in a subprocess: the commit fails with EFBIG like a full
    disk, even for root; lifting the limit lets the next batch through."""
    out = subprocess.run(
        [sys.executable, "-c", DISK_FULL_SCRIPT, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "failed:" in out.stdout
    assert out.stdout.rstrip().endswith("ok")


def test_unopenable_writer_fails_the_batch(tmp_path: Path) -> None:
    """The writer connection cannot be opened (file gone behind a directory):
    each batch gets the error, and once the path is usable again they commit."""
    data = tmp_path / "data"
    store = open_store("sqlite", str(data), "process")

    async def main() -> None:
        committer = Committer(store)
        store.close()
        moved = tmp_path / "moved"
        data.rename(moved)
        data.write_bytes(b"")  # the data dir is now a file: nothing can open below it
        error = await _commit(committer, [PutRetained("x", b"1", 0, None)])
        assert isinstance(error, StoreError)
        assert "flockmq.db" in str(error)
        data.unlink()
        moved.rename(data)
        assert await _commit(committer, [PutRetained("x", b"1", 0, None)]) is None
        committer.close()

    asyncio.run(main())
    with open_store("sqlite", str(data), "process") as fresh:
        assert [r.topic for r in fresh.load_retained()] == ["x"]


def test_submit_never_waits_for_the_disk(tmp_path: Path) -> None:
    """While the write lock is held elsewhere, submit returns at once."""
    data = str(tmp_path / "data")
    store = open_store("sqlite", data, "process", busy_timeout_ms=5000)
    blocker = sqlite3.connect(db_path(data), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    committer = Committer(store)
    try:
        for i in range(1000):
            committer.submit([PutRetained(f"t/{i}", b"x", 0, None)])
        assert committer.pending > 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    committer.close()
    assert len(store.load_retained()) == 1000
    store.close()
