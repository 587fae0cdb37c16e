"""The tests' PostgreSQL server (tests/postgres.py) dies with its test
session: a process that started one and is then SIGKILLed (as a CI timeout
kills pytest) leaves neither the server nor its directory behind, because
its watchdog (tests/pg_watchdog.py) stops them. Skipped, saying why, where
PostgreSQL cannot run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .clients import wait_for

# A stand-in for a pytest session: starts the server, says where it is, waits.
SESSION = """
import sys, time
from _pytest.outcomes import Skipped
from tests.postgres import start_server
try:
    server = start_server()
except Skipped as exc:
    print("SKIP", str(exc).replace("\\n", " "), flush=True)
    sys.exit(0)
print(server.pid, server.base, flush=True)
time.sleep(600)
"""


def test_a_killed_session_leaves_no_postgres_server_behind() -> None:
    root = str(Path(__file__).resolve().parents[2])
    session = subprocess.Popen(
        [sys.executable, "-c", SESSION], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert session.stdout is not None
        line = session.stdout.readline().strip()
        if line.startswith("SKIP") or not line:
            pytest.skip(line.removeprefix("SKIP ") or "the session printed nothing")
        pid, base = line.split(" ", 1)
        postmaster = psutil.Process(int(pid))
        assert postmaster.name().startswith("postgres")
        os.kill(session.pid, signal.SIGKILL)
        session.wait(10)
        wait_for(lambda: not postmaster.is_running(), 30, "the postmaster to stop")
        wait_for(lambda: not os.path.exists(base), 30, f"{base} to be removed")
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
