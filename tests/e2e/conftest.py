"""Fixtures: the real multi-process broker, started as a user starts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .broker import Broker, MakeBroker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker (2 acceptors, 2 workers) shared by a test module; tests use
    unique client ids and topics so they do not see each other."""
    b = Broker(tmp_path_factory.mktemp("broker"), extra_args=["--sys-interval", "0.5"])
    b.start()
    yield b
    b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[MakeBroker]:
    """A factory for a broker of the test's own (for tests that kill processes
    or need special flags)."""
    started: list[Broker] = []

    def factory(*extra_args: str, acceptors: int = 2, workers: int = 2) -> Broker:
        b = Broker(
            tmp_path / f"b{len(started)}",
            acceptors,
            workers,
            ["--sys-interval", "0.5", *extra_args],
        )
        started.append(b)
        return b.start()

    yield factory
    for b in started:
        b.stop()
