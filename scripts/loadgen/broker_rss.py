"""The broker's resident memory, summed over all its processes.

A multi-process broker is a supervisor and its children (acceptors, router,
workers): given the supervisor's pid we sum it and its descendants, found
afresh at each sample since a crashed child is replaced by a new pid. Without
a pid, the processes listening on the broker's port are found with psutil and
each is climbed to its topmost ancestor that runs a broker program, which is
the supervisor of a flockmq and the process itself for mosquitto.
"""

from __future__ import annotations

import contextlib

import psutil


def find_broker(port: int, pid: int | None = None) -> list[psutil.Process]:
    """The root process(es) of the broker: `pid`, or those found by `port`."""
    if pid is not None:
        try:
            return [psutil.Process(pid)]
        except psutil.Error:
            return []
    roots: dict[int, psutil.Process] = {}
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                continue
            try:
                root = _climb(psutil.Process(conn.pid))
            except psutil.Error:
                continue
            roots[root.pid] = root
    return list(roots.values())


BROKER_PROGRAMS = ("flockmq", "mosquitto")


def _is_broker(proc: psutil.Process) -> bool:
    """Whether a process runs a broker program: `flockmq serve`, one of its
    children (`python -m flockmq.app.child ...`) or mosquitto."""
    try:
        cmdline: list[str] = proc.cmdline()
    except psutil.Error:
        return False
    return any(arg.rsplit("/", 1)[-1].startswith(BROKER_PROGRAMS) for arg in cmdline[:3])


def _climb(proc: psutil.Process) -> psutil.Process:
    """The topmost ancestor of `proc` (itself included) that is broker too."""
    while True:
        parent = proc.parent()
        if parent is None or parent.pid <= 1 or not _is_broker(parent):
            return proc
        proc = parent


def total_rss(roots: list[psutil.Process]) -> int:
    """Bytes resident in the roots and all their descendants right now."""
    seen: set[int] = set()
    total = 0
    for root in roots:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
    return total
