"""A real Acceptor in its process (frontend/acceptor.py `acceptor_process`),
on an event loop that is never run, with connections over a fake transport:
what it would send is read from the bus's outboxes, what it would write from
the transport. Shared by the acceptor's unit tests and the simulation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from flockmq.config import Config
from flockmq.frontend.acceptor import Acceptor, acceptor_process
from flockmq.frontend.acceptor_core import AcceptorCore
from flockmq.runtime_process import CoreProcess


class FakeTransport:
    def __init__(self) -> None:
        self.reading = True
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str) -> None:
        return None

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


@pytest.fixture
def process(tmp_path: Path) -> Iterator[CoreProcess]:
    """An acceptor's process, not started: its bus is wired, its loop never runs."""
    loop = asyncio.new_event_loop()
    config = Config(acceptors=1, workers=2, runtime_dir=str(tmp_path), data_dir=str(tmp_path))
    _acceptor, proc = acceptor_process(config, 0, 1, loop)
    yield proc
    proc.bus.close()
    loop.close()


@pytest.fixture
def acceptor(process: CoreProcess) -> Acceptor:
    return acceptor_of(process)


def acceptor_of(process: CoreProcess) -> Acceptor:
    core = process.runner.core
    assert isinstance(core, AcceptorCore)
    return core.acceptor
