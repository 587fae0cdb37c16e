"""Fixtures: `store` runs a test against each backend (sqlite in a fresh data
dir, memory); `reopen` gives a fresh handle on the same state where a backend
has one (sqlite reopens the file; memory returns the same object)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flockmq.store import Store, open_store

KINDS = ("sqlite", "memory")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def store(kind: str, tmp_path: Path) -> Iterator[Store]:
    s = open_store(kind, str(tmp_path / "data"), "process")
    yield s
    s.close()


@pytest.fixture
def reopen(kind: str, store: Store, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """A new handle on `store`'s state: proves rows came from the file, not a cache."""
    opened: list[Store] = []

    def _reopen() -> Store:
        if kind == "memory":
            return store
        s = open_store(kind, str(tmp_path / "data"), "process")
        opened.append(s)
        return s

    yield _reopen
    for s in opened:
        s.close()
