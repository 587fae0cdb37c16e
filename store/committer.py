"""Group commit off the event loop: a background thread applies batches of ops.

The event loop calls `submit(ops, on_done)`, which only appends to a list and
wakes the thread. The thread takes everything submitted so far, applies it
through its own `Writer` (its own connection) in ONE transaction, commits, and
then schedules each `on_done(error_or_None)` on the loop with
`call_soon_threadsafe`.

Invariants:

- Ops are applied in submission order; a batch is all submissions pending when
  the thread wakes, applied whole or not at all, after `store.compact` folded
  the message rows that are put and acknowledged within it.
- Every `on_done` is called exactly once, on the loop's thread, after its ops
  are committed (None) or known not to be (a StoreError). Callbacks run in
  submission order.
- A failed batch (disk full, permission lost, lock timeout) fails only its own
  submissions; the thread carries on, and the next batch succeeds once the
  store can write again. Ops of a failed batch are NOT retried: the caller
  knows from the error and must re-put what it still wants durable.
- `release(ops, on_done)` is `submit` for envelopes that must not overtake
  earlier ones waiting for a commit: with no ops and nothing outstanding it
  calls `on_done(None)` at once, otherwise it queues behind the rest.
- `flush_sync()` blocks until everything submitted before it is settled;
  `close()` flushes, stops the thread and closes the writer. Nothing submitted
  before `close()` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence

from .base import Op, Store, StoreError, Writer
from .compact import compact

log = logging.getLogger("flockmq.store")

OnDone = Callable[[StoreError | None], None]
Batch = list[tuple[Sequence[Op], OnDone | None]]


class Committer:
    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """`loop` receives the callbacks; by default the running loop at the
        first `submit` that passes an `on_done`."""
        self.store = store
        self._loop = loop
        self._cond = threading.Condition()
        self._pending: Batch = []
        self._submitted = 0  # submissions ever made
        self._settled = 0  # submissions committed or failed
        self._closing = False
        self._outstanding = 0  # callbacks submitted and not yet run (loop side only)
        self.batches = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="flockmq-committer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ loop side

    def submit(self, ops: Sequence[Op], on_done: OnDone | None = None) -> None:
        """Queue `ops` for the next group commit; never blocks on disk."""
        if on_done is not None and self._loop is None:
            self._loop = asyncio.get_running_loop()
        with self._cond:
            if self._closing:
                raise StoreError(f"{self.store.path}: committer is closed")
            self._pending.append((ops, on_done if on_done is None else self._counted(on_done)))
            self._submitted += 1
            self._cond.notify()
        if on_done is not None:
            self._outstanding += 1

    def release(self, ops: Sequence[Op], on_done: OnDone) -> None:
        """`on_done` once `ops` are committed and every callback submitted
        before has run: what a process holds back for durability leaves in
        the order it was produced (a pass without ops of its own must not
        overtake an earlier pass still being committed)."""
        if ops or self._outstanding:
            self.submit(ops, on_done)
        else:
            on_done(None)

    def _counted(self, on_done: OnDone) -> OnDone:
        def done(error: StoreError | None) -> None:
            self._outstanding -= 1
            on_done(error)

        return done

    def flush_sync(self, timeout: float | None = None) -> bool:
        """Block until everything submitted so far is committed or failed; False
        on timeout. Callbacks are scheduled, not yet run, when this returns."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is pending, stop the thread, close the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def pending(self) -> int:
        """Submissions not yet settled."""
        return self._submitted - self._settled

    # ---------------------------------------------------------- thread side

    def _run(self) -> None:
        writer: Writer | None = None
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._pending or self._closing)
                    batch, self._pending = self._pending, []
                    if not batch and self._closing:
                        return
                if writer is None:
                    writer = self._open_writer(batch)
                    if writer is None:
                        continue
                error = self._commit(writer, batch)
                self._settle(batch, error)
        finally:
            if writer is not None:
                writer.close()

    def _open_writer(self, batch: Batch) -> Writer | None:
        try:
            return self.store.writer()
        except StoreError as e:
            self.failures += 1
            log.error("store writer: %s", e)
            self._settle(batch, e)
            return None

    def _commit(self, writer: Writer, batch: Batch) -> StoreError | None:
        ops = compact([op for submitted, _ in batch for op in submitted])
        self.batches += 1
        if not ops:  # everything folded away (see store.compact): nothing to write
            return None
        try:
            writer.apply(ops)
        except StoreError as e:
            self.failures += 1
            log.error("store commit of %d ops failed: %s", len(ops), e)
            return e
        except Exception as e:  # a bug in an op must not kill the thread
            self.failures += 1
            log.exception("store commit of %d ops failed", len(ops))
            return StoreError(f"{self.store.path}: commit failed: {e!r}")
        return None

    def _settle(self, batch: Batch, error: StoreError | None) -> None:
        loop = self._loop
        for _, on_done in batch:
            if on_done is None:
                continue
            if loop is None:  # unreachable: submit sets the loop with the first on_done
                continue
            try:
                loop.call_soon_threadsafe(on_done, error)
            except RuntimeError:  # the loop is closed: shutdown, nobody is waiting
                log.debug("store: loop closed, dropped a commit callback")
        with self._cond:
            self._settled += len(batch)
            self._cond.notify_all()
