"""What every hostile test checks after its attack: the broker's processes
are the ones it started with, a fresh pub/sub pair still works, the log has
no traceback; and how much memory the broker's processes hold."""

from __future__ import annotations

import psutil

from flockmq.app.proctitle import role_of
from tests.e2e.broker import Broker
from tests.e2e.clients import assert_round_trip

MB = 1024 * 1024


def child_pids(broker: Broker) -> dict[tuple[str, int], int]:
    """(role, index) -> pid of every broker child."""
    pids = {}
    for child in broker.children():
        try:
            found = role_of(child.cmdline(), child.name())  # title or ROLE-INDEX name
        except psutil.NoSuchProcess:
            continue
        if found is not None and found[0] != "supervisor":
            pids[found] = child.pid
    return pids


def rss(broker: Broker) -> dict[tuple[str, int], int]:
    """Resident bytes per child."""
    out = {}
    for key, pid in child_pids(broker).items():
        try:
            out[key] = psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            out[key] = 0
    return out


def total_rss(broker: Broker) -> int:
    return sum(rss(broker).values())


def assert_healthy(broker: Broker, pids: dict[tuple[str, int], int]) -> None:
    """No broker process died or restarted, others are served, no traceback."""
    assert broker.proc is not None and broker.proc.poll() is None
    assert child_pids(broker) == pids
    assert_round_trip(broker)
    assert "Traceback" not in broker.log()
