"""Fold a group commit's ops before they reach the disk (pure function).

A persistent session's outbound message usually lives a few milliseconds: it
is put when it arrives (`PutMessage`), goes in flight (`UpdateMessage`, unless
the worker folded that into the Put already), and is acknowledged by the
subscriber (`DeleteMessage`) before or around the next commit. When those ops
meet in one batch, writing each of them is wasted work; `compact` folds the
ops of one message row (client id, seq):

- `PutMessage` then `UpdateMessage`: one `PutMessage` carrying the new packet
  id and state, at the Put's position;
- `UpdateMessage` then `UpdateMessage` (of a row put in an earlier batch):
  only the later one, at the earlier one's position;
- `PutMessage` or `UpdateMessage` then `DeleteMessage`: only the Delete (the
  Delete stays, since the Put may have replaced a row of an earlier batch,
  and the Update certainly changed one);
- `PutMessage` then a later `PutMessage`: only the later one.

Invariant: applying `compact(ops)` in one transaction leaves the store in
exactly the state that applying `ops` would. This holds because a batch is one
transaction (nobody sees the intermediate rows), because each fold replaces
ops of one row by an op with the same final effect on that row, and because
nothing folds across a `DeleteSession` of the row's client (the index of
foldable ops of that client is dropped there); every other op keeps its
relative order. `tests/unit/store/test_compact.py` checks it against both
backends with random op sequences.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import DeleteMessage, DeleteSession, Op, PutMessage, UpdateMessage

NONE: dict[int, int] = {}  # never written to


def compact(ops: Sequence[Op]) -> list[Op]:
    out: list[Op | None] = []
    # client id -> seq -> index in `out` of the latest Put or Update of that row
    # still there (one that a later op of the row may fold into)
    rows: dict[str, dict[int, int]] = {}
    for op in ops:
        if isinstance(op, PutMessage):
            seqs = rows.setdefault(op.client_id, {})
            earlier = seqs.get(op.seq)
            if earlier is not None:  # replaced by this one (INSERT OR REPLACE)
                out[earlier] = None
            seqs[op.seq] = len(out)
        elif isinstance(op, UpdateMessage):
            seqs = rows.setdefault(op.client_id, {})
            at = seqs.get(op.seq)
            if at is not None:
                last = out[at]
                if isinstance(last, PutMessage):
                    out[at] = PutMessage(  # (dataclasses.replace is 3x slower)
                        last.client_id,
                        last.seq,
                        last.topic,
                        last.payload,
                        last.qos,
                        last.retain,
                        last.props,
                        op.packet_id,
                        op.state,
                    )
                else:  # an Update: this one sets both of its fields
                    out[at] = op
                continue
            seqs[op.seq] = len(out)
        elif isinstance(op, DeleteMessage):
            at = rows.get(op.client_id, NONE).get(op.seq)
            if at is not None:
                out[at] = None
                del rows[op.client_id][op.seq]
        elif isinstance(op, DeleteSession):
            # The session's rows are gone: a later op on one of its seqs must
            # not reach back over this into an earlier one.
            rows.pop(op.client_id, None)
        out.append(op)
    return [op for op in out if op is not None]
