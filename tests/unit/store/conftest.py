"""Fixtures: `store` runs a test against each backend (sqlite in a fresh data
dir, a fresh database of the test PostgreSQL server (tests/postgres.py; skipped,
saying why, where it cannot run), memory); `reopen` gives a fresh handle on the
same state where a backend has one (sqlite reopens the file, postgres connects
again; memory returns the same object)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flockmq.store import Store, open_store

KINDS = ("sqlite", "postgres", "memory")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def dsn(kind: str, request: pytest.FixtureRequest) -> str:
    """The test's own PostgreSQL database for kind "postgres", else ""."""
    if kind != "postgres":
        return ""
    value: str = request.getfixturevalue("postgres_dsn")
    return value


@pytest.fixture
def store(kind: str, dsn: str, tmp_path: Path) -> Iterator[Store]:
    s = open_store(kind, str(tmp_path / "data"), "process", dsn=dsn)
    yield s
    s.close()


@pytest.fixture
def reopen(kind: str, dsn: str, store: Store, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A new handle on `store`'s state: proves rows came from the file (or the
    server), not a cache."""
    opened: list[Store] = []

    def _reopen() -> Store:
        if kind == "memory":
            return store
        s = open_store(kind, str(tmp_path / "data"), "process", dsn=dsn)
        opened.append(s)
        return s

    yield _reopen
    for s in opened:
        s.close()
