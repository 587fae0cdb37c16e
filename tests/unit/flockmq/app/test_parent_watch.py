"""flockmq.app.parent_watch: a child stops when its supervisor dies, by each of
its three ways: PR_SET_PDEATHSIG, the parent-pid watch (the fallback, alone
here), and the grace period after which a child that ignores SIGTERM is
ended; and a child whose supervisor died before it started does not start.

These start small Python processes (a stand-in supervisor and its child);
the whole broker is in tests/e2e/test_supervisor.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flockmq.config import Config

TIMEOUT = 10.0

# The child: set up the way a broker child is (its parent is the stand-in
# supervisor), then wait; on SIGTERM it records the stop and exits.
CHILD = """
import os, signal, sys, time
from pathlib import Path
from flockmq.app import parent_watch

mode, marker = sys.argv[1], Path(sys.argv[2])
if mode == "watch":
    parent_watch.set_parent_death_signal = lambda signum: False  # the fallback alone
    parent_watch.WATCH_INTERVAL = 0.05
elif mode == "pdeathsig":
    parent_watch.WATCH_INTERVAL = 3600.0  # the kernel's signal alone
if mode == "stubborn":
    parent_watch.WATCH_INTERVAL = 0.05
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: (marker.write_text("SIGTERM"), os._exit(0)))
assert parent_watch.stop_with_parent(os.getppid(), grace=0.5)
Path(str(marker) + ".ready").write_text(str(os.getpid()))
while True:
    time.sleep(0.01)
"""

# The stand-in supervisor: starts the child, then waits to be killed.
SUPERVISOR = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
time.sleep(600)
"""


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + TIMEOUT
    while not path.exists() or not path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written")
        time.sleep(0.01)
    return path.read_text()


@pytest.fixture
def family(tmp_path: Path) -> Iterator[tuple[Path, list[int]]]:
    """(marker path, pids to kill at the end whatever happens)."""
    pids: list[int] = []
    yield tmp_path / "stopped", pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def kill_supervisor_of_child(mode: str, marker: Path, pids: list[int]) -> psutil.Process:
    """Start the pair, kill -9 the stand-in supervisor once its child is set
    up; returns the child."""
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, CHILD, mode, str(marker)])
    pids.append(supervisor.pid)
    child = psutil.Process(int(wait_for_file(Path(str(marker) + ".ready"))))
    pids.append(child.pid)
    supervisor.kill()
    supervisor.wait()
    return child


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_the_kernel_signals_the_child_when_its_supervisor_dies(
    family: tuple[Path, list[int]],
) -> None:
    marker, pids = family
    child = kill_supervisor_of_child("pdeathsig", marker, pids)
    child.wait(TIMEOUT)
    assert marker.read_text() == "SIGTERM"


def test_the_watch_stops_the_child_without_the_kernel_signal(
    family: tuple[Path, list[int]],
) -> None:
    marker, pids = family
    child = kill_supervisor_of_child("watch", marker, pids)
    child.wait(TIMEOUT)
    assert marker.read_text() == "SIGTERM"


def test_a_child_that_does_not_stop_is_ended_after_the_grace_period(
    family: tuple[Path, list[int]],
) -> None:
    marker, pids = family
    child = kill_supervisor_of_child("stubborn", marker, pids)
    child.wait(TIMEOUT)  # SIGTERM ignored: os._exit after 0.5 s
    assert not marker.exists()


def test_a_child_whose_supervisor_is_already_gone_does_not_start(tmp_path: Path) -> None:
    """The race PR_SET_PDEATHSIG leaves: the supervisor died before the
    child asked for the signal. The child is told the supervisor's pid and
    sees that its parent is another one."""
    config = tmp_path / "config.json"
    config.write_text(Config(data_dir=str(tmp_path), acceptors=1, workers=1).to_json())
    not_the_parent = os.getpid() + 1_000_000  # not a pid of anything
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flockmq.app.child",
            "router",
            "0",
            "--config",
            str(config),
            "--supervisor",
            str(not_the_parent),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"the supervisor (pid {not_the_parent}) died before it started" in (
        result.stdout + result.stderr
    )
    assert not list(tmp_path.glob("*.db")), "the router started and opened the store"
