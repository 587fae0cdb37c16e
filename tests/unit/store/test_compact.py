"""store.compact: a batch folded by `compact` leaves the store exactly as the
batch itself would (checked against every backend with random op sequences),
and the usual message life within one batch is one delete of a missing row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flockmq.store import (
    DeleteInboundQos2,
    DeleteMessage,
    DeleteRetained,
    DeleteSession,
    DeleteSubscription,
    MemoryStore,
    Op,
    PruneSeenQos2,
    PutInboundQos2,
    PutMessage,
    PutRetained,
    PutSeenQos2,
    PutSession,
    PutSubscription,
    Store,
    UpdateMessage,
    open_store,
)
from flockmq.store.compact import compact
from tests.postgres import PostgresServer


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


@pytest.fixture(scope="module")
def postgres_store(postgres_server: PostgresServer) -> Iterator[Store]:
    """One PostgreSQL store for every example (each starts by deleting the
    sessions it uses, which deletes all their rows)."""
    name = postgres_server.create_database()
    with open_store("postgres", "", "process", dsn=postgres_server.dsn(name)) as store:
        yield store
    postgres_server.drop_database(name)


TOPICS = st.sampled_from(["x", "y/z"])
PIDS = st.integers(1, 3)
TOKENS = st.integers(0, 2)
EVERY_OP = st.one_of(
    OPS,
    st.builds(
        PutSession,
        CIDS,
        st.integers(0, 2**32 - 1),
        st.sampled_from([4, 5]),
        st.sampled_from([None, b"w"]),
        st.sampled_from([None, 1.5]),
    ),
    st.builds(
        PutSubscription,
        CIDS,
        TOPICS,
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        st.integers(0, 2),
        st.sampled_from([None, 7]),
    ),
    st.builds(DeleteSubscription, CIDS, TOPICS),
    st.builds(PutInboundQos2, CIDS, PIDS, TOKENS),
    st.builds(DeleteInboundQos2, CIDS, PIDS),
    st.builds(PutSeenQos2, CIDS, CIDS, PIDS, TOKENS),
    st.just(PruneSeenQos2()),
    st.builds(
        PutRetained,
        TOPICS,
        st.sampled_from([b"", b"r"]),
        st.integers(0, 2),
        st.sampled_from([None, b"p"]),
    ),
    st.builds(DeleteRetained, TOPICS),
)


@settings(max_examples=200, deadline=None)
@given(before=st.lists(EVERY_OP, max_size=8), batch=st.lists(EVERY_OP, min_size=4, max_size=24))
def test_postgres_leaves_the_state_memory_does(
    postgres_store: Store, before: list[Op], batch: list[Op]
) -> None:
    """The same random batches of every kind of op, as is and compacted,
    through PostgreSQL and the memory backend."""
    sessions = [PutSession(c, 60, 4, None, None) for c in ("a", "b")]
    wipe: list[Op] = [
        DeleteSession("a"),
        DeleteSession("b"),
        DeleteRetained("x"),
        DeleteRetained("y/z"),
    ]
    results = []
    for ops in (batch, compact(batch)):
        for store in (MemoryStore(), postgres_store):
            store.apply(wipe)
            store.apply([*sessions, *before])
            store.apply([*sessions, *ops])
            results.append((state(store), store.load_retained()))
    assert all(r == results[0] for r in results), (before, batch)
