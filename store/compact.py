"""Fold a group commit's ops before they reach the disk (pure function).

A persistent session's outbound message usually lives a few milliseconds: it
is put when it arrives (`PutMessage`), goes in flight at once
(`UpdateMessage`), and is acknowledged by the subscriber (`DeleteMessage`)
before or around the next commit. When those ops meet in one batch, writing
them is wasted work; `compact` folds them:

- `PutMessage` then `UpdateMessage` of the same (client id, seq): one
  `PutMessage` carrying the new packet id and state, at the Put's position;
- `PutMessage` then `DeleteMessage` of the same (client id, seq): only the
  Delete (the row would be inserted and deleted in the same transaction; the
  Delete stays in case the Put replaced a row of an earlier batch);
- an `UpdateMessage` folded into a Put that a later Delete drops goes with it;
- a `PutMessage` replaced by a later Put of the same key: only the later one.

Invariant: applying `compact(ops)` in one transaction leaves the store in
exactly the state that applying `ops` would. This holds because a batch is one
transaction (nobody sees the intermediate rows), because only the latest Put
of a key is folded into (a `DeleteSession` between a Put and a later Put of the
same key, after a session was recreated, is left in place: the later ops fold
into the later Put, which comes after it), and because every other op keeps
its relative order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .base import DeleteMessage, DeleteSession, Op, PutMessage, UpdateMessage

NONE: dict[int, int] = {}  # never written to


def compact(ops: Sequence[Op]) -> list[Op]:
    out: list[Op | None] = []
    # client id -> seq -> index in `out` of its latest PutMessage still there
    puts: dict[str, dict[int, int]] = {}
    for op in ops:
        if isinstance(op, PutMessage):
            seqs = puts.setdefault(op.client_id, {})
            earlier = seqs.get(op.seq)
            if earlier is not None:  # replaced by this one (INSERT OR REPLACE)
                out[earlier] = None
            seqs[op.seq] = len(out)
        elif isinstance(op, UpdateMessage | DeleteMessage):
            held = puts.get(op.client_id, NONE)
            at = held.get(op.seq)
            if at is not None:
                put = out[at]
                assert isinstance(put, PutMessage)
                if isinstance(op, UpdateMessage):
                    out[at] = replace(put, packet_id=op.packet_id, state=op.state)
                    continue
                # The Delete stays: the Put may have replaced a row of an
                # earlier batch. Deleting a row that is not there writes no page.
                out[at] = None
                del held[op.seq]
        elif isinstance(op, DeleteSession):
            # The session's rows are gone: a later Update/Delete of one of its
            # seqs must not reach back over this into an earlier Put (on the
            # store it is a no-op, and stays one).
            puts.pop(op.client_id, None)
        out.append(op)
    return [op for op in out if op is not None]
