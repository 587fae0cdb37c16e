"""The broker's resident memory, summed over all its processes.

A multi-process broker is a supervisor and its children (acceptors, router,
workers): given the supervisor's pid we sum it and its descendants, found
afresh at each sample since a crashed child is replaced by a new pid. Without
a pid, the processes listening on the broker's port are found with psutil and
each is climbed to its topmost ancestor that runs the same program, which is
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


def _program(proc: psutil.Process) -> str:
    """What a process runs: the script or entry point for Python, else the exe."""
    cmdline: list[str] = proc.cmdline()
    for arg in cmdline[:3]:
        if "flockmq" in arg or "mosquitto" in arg:
            return arg.rsplit("/", 1)[-1]
    return cmdline[0] if cmdline else str(proc.name())


def _climb(proc: psutil.Process) -> psutil.Process:
    program = _program(proc)
    while True:
        parent = proc.parent()
        if parent is None or parent.pid <= 1:
            return proc
        try:
            if _program(parent) != program:
                return proc
        except psutil.Error:
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
