"""A broker whose processes talk over ZeroMQ tcp:// (transport = "tcp"): every
process binds tcp_base_port + n, so the whole range must be free when they
start, not only the base port. A range found free can still be taken between
the check and the bind (another test's broker, another program), and the
supervisor then restarts the child that failed to bind, forever: the broker
looks ready (another acceptor answers) while a process is missing. So the
start waits until every port of the range is listened on by the broker's own
processes, and starts again on another range when a bind failed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import psutil

from flockmq.app.probe import free_port_range

from .broker import Broker

CLASH = "Address already in use"


def bus_port_count(acceptors: int, workers: int, routers: int = 1, auth_processes: int = 0) -> int:
    """How many ports the bus takes from tcp_base_port (flockmq/config.py:
    a core inbox per process, a work inbox per router and per worker)."""
    return 2 * workers + acceptors + auth_processes + 2 * routers


def listening_ports(broker: Broker) -> set[int]:
    """The TCP ports the broker's processes listen on."""
    ports: set[int] = set()
    for child in broker.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            ports |= {c.laddr.port for c in child.net_connections("tcp") if c.status == "LISTEN"}
    return ports


def start_tcp_broker(
    where: Path, *extra_args: str, acceptors: int = 2, workers: int = 2, attempts: int = 5
) -> tuple[Broker, int]:
    """A started broker on a tcp:// bus and its tcp_base_port; `where` holds
    its config and data dirs. The caller stops the broker."""
    count = bus_port_count(acceptors, workers)
    for attempt in range(attempts):
        base = free_port_range(count)
        config = where / f"tcp-{attempt}.toml"
        config.write_text(f'transport = "tcp"\ntcp_base_port = {base}\n')
        broker = Broker(
            where / f"b{attempt}",
            acceptors,
            workers,
            ["--sys-interval", "0.5", "--config", str(config), *extra_args],
        )
        try:
            broker.start()
            if _bus_bound(broker, range(base, base + count)):
                return broker, base
        except BaseException:
            broker.stop()
            raise
        broker.stop()  # a port of the range was taken meanwhile: another range
    raise AssertionError(f"{attempts} tcp bus ranges were taken before the broker bound them")


def _bus_bound(broker: Broker, ports: range, timeout: float = 30.0) -> bool:
    """True once the broker's processes listen on every port of `ports`;
    False as soon as one of them failed to bind (its log says so)."""
    deadline = time.monotonic() + timeout
    while not set(ports) <= listening_ports(broker):
        if CLASH in broker.log():
            return False
        if time.monotonic() > deadline:
            raise TimeoutError(f"bus ports {ports} not all bound after {timeout}s:\n{broker.log()}")
        time.sleep(0.05)
    return True
