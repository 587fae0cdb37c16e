"""store.compact: a batch folded by `compact` leaves the store exactly as the
batch itself would (checked against both backends with random op sequences),
and the usual message life within one batch is one delete of a missing row."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.store import (
    DeleteMessage,
    DeleteSession,
    Op,
    PutMessage,
    PutSession,
    PutSubscription,
    Store,
    UpdateMessage,
    open_store,
)
from flockmq.store.compact import compact


def everyone(_cid: str) -> bool:
    return True


def put(cid: str, seq: int, payload: bytes = b"p") -> PutMessage:
    return PutMessage(cid, seq, "t", payload, 1, False, None)


def test_message_put_sent_and_acked_in_one_batch_is_only_deleted() -> None:
    ops: list[Op] = [put("a", 1), UpdateMessage("a", 1, 7, 0), DeleteMessage("a", 1)]
    assert compact(ops) == [DeleteMessage("a", 1)]


def test_update_folds_into_the_put_at_its_position() -> None:
    ops: list[Op] = [put("a", 1), PutSubscription("a", "x", 1), UpdateMessage("a", 1, 9, 1)]
    assert compact(ops) == [
        PutMessage("a", 1, "t", b"p", 1, False, None, 9, 1),
        PutSubscription("a", "x", 1),
    ]


def test_ops_on_rows_of_earlier_batches_are_kept() -> None:
    ops: list[Op] = [UpdateMessage("a", 1, 9, 1), DeleteMessage("a", 2), put("b", 1)]
    assert compact(ops) == ops


def test_a_row_of_an_earlier_batch_sent_and_acked_in_this_one_is_only_deleted() -> None:
    ops: list[Op] = [UpdateMessage("a", 1, 7, 0), put("b", 1), DeleteMessage("a", 1)]
    assert compact(ops) == [put("b", 1), DeleteMessage("a", 1)]
    ops = [UpdateMessage("a", 1, 7, 0), put("b", 1), UpdateMessage("a", 1, 7, 1)]
    assert compact(ops) == [UpdateMessage("a", 1, 7, 1), put("b", 1)]


def test_nothing_reaches_back_over_a_session_delete() -> None:
    ops: list[Op] = [put("a", 1), DeleteSession("a"), UpdateMessage("a", 1, 3, 0)]
    assert compact(ops) == ops
    ops = [put("a", 1), DeleteSession("a"), DeleteMessage("a", 1)]
    assert compact(ops) == ops


CIDS = st.sampled_from(["a", "b"])
SEQS = st.integers(1, 3)
OPS = st.one_of(
    st.builds(put, CIDS, SEQS, st.sampled_from([b"x", b"y"])),
    st.builds(UpdateMessage, CIDS, SEQS, st.integers(1, 5), st.integers(0, 1)),
    st.builds(DeleteMessage, CIDS, SEQS),
    st.builds(DeleteSession, CIDS),
)


def state(store: Store) -> object:
    return store.load_sessions(everyone)


@settings(max_examples=150, deadline=None)
@given(before=st.lists(OPS, max_size=6), batch=st.lists(OPS, max_size=12))
def test_compacted_batch_leaves_the_same_state(
    tmp_path_factory: object, before: list[Op], batch: list[Op]
) -> None:
    """Against the memory backend and SQLite: rows of an earlier batch
    (`before`), then `batch` applied as is or compacted."""
    assert hasattr(tmp_path_factory, "mktemp")
    results = []
    for ops in (batch, compact(batch)):
        for kind in ("memory", "sqlite"):
            tmp: Path = tmp_path_factory.mktemp("compact")
            with open_store(kind, str(tmp), "process") as store:
                sessions = [PutSession(c, 60, 4, None, None) for c in ("a", "b")]
                store.apply([*sessions, *before])
                store.apply([*sessions, *ops])
                results.append(state(store))
    assert all(r == results[0] for r in results), (batch, compact(batch))
