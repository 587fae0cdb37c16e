"""The PostgreSQL test server's watchdog (tests/postgres.py): a process of its
own session that waits for the test session's pytest to go away, then stops
the server (immediate shutdown: SIGQUIT to the postmaster, SIGKILL if it is
still there after 10 s) and removes its directory. A session that ends
normally stops the server itself and SIGTERMs this watchdog first; a session
that is SIGKILLed (a CI timeout, kill -9) no longer leaves an orphaned server
behind.

    python tests/pg_watchdog.py OWNER_PID OWNER_START_TIME BASE_DIR

The postmaster's PID is read from BASE_DIR/data/postmaster.pid when the owner
is gone (the server may have been restarted since: listen_also)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time

import psutil

POLL = 0.2  # seconds between two looks at the owner


def alive(pid: int, started: float) -> bool:
    """`pid` runs and is the process that started at `started` (not a reused PID)."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 1 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def postmaster(base: str) -> psutil.Process | None:
    try:
        with open(os.path.join(base, "data", "postmaster.pid")) as fh:
            proc = psutil.Process(int(fh.readline()))
        return proc if proc.name().startswith("postgres") else None
    except (OSError, ValueError, psutil.Error):
        return None


def stop_server(base: str) -> None:
    proc = postmaster(base)
    if proc is not None:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGQUIT)  # immediate shutdown: the backends go too
            try:
                proc.wait(10)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str]) -> int:
    owner, started, base = int(argv[0]), float(argv[1]), argv[2]
    while alive(owner, started):
        time.sleep(POLL)
    stop_server(base)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
