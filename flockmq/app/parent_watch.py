"""A broker child stops when its supervisor dies.

Without this, `kill -9` of `flockmq serve` leaves the router, the workers and
the acceptors running as orphans: still serving, with nobody to restart them,
holding the port and writing the store.

Two mechanisms, set up by `stop_with_parent` first thing in every child:

- Linux `prctl(PR_SET_PDEATHSIG, SIGTERM)`: the kernel sends the child SIGTERM
  when its parent exits. It has a race: a parent that died between the fork
  and the prctl call sends nothing. So right after it the child checks that
  its parent is still the supervisor whose pid it was given.
- A watch thread checks that `os.getppid()` is still the supervisor's pid
  (an orphan is re-parented to init or a subreaper) every `WATCH_INTERVAL`
  seconds: a fallback where prctl is missing (not Linux) or failed.

Either way the child gets SIGTERM, the signal the supervisor itself stops it
with, so it stops the same clean way: acceptors close their connections,
workers and the router finish their pending group commit (nothing that was
acknowledged depends on it: an acknowledgement waits for its commit, and a
commit cut short by a kill loses nothing committed before it). Nobody is left
to SIGKILL a child that does not stop, so the watch ends it (`os._exit`) once
`grace` seconds have passed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

log = logging.getLogger("flockmq.app.child")

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL = 0.5  # seconds between checks of the parent pid


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` when the parent exits (Linux only);
    False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result = libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    if result != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def stop_with_parent(supervisor_pid: int, grace: float) -> bool:
    """Make this process stop (SIGTERM, then `os._exit` after `grace`
    seconds) when `supervisor_pid`, its parent, dies. False if it already
    has: the caller must not start."""
    set_parent_death_signal(signal.SIGTERM)
    # Checked after prctl: a parent that dies from here on sends the signal.
    if os.getppid() != supervisor_pid:
        return False
    threading.Thread(
        target=_watch, args=(supervisor_pid, grace), name="flockmq-parent-watch", daemon=True
    ).start()
    return True


def _watch(supervisor_pid: int, grace: float) -> None:
    while os.getppid() == supervisor_pid:
        time.sleep(WATCH_INTERVAL)
    log.warning("the supervisor (pid %d) is gone: stopping", supervisor_pid)
    # Also when PDEATHSIG was delivered already: a second SIGTERM only asks
    # for the stop that is under way.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    log.error("still running %.0fs after the supervisor died: exiting now", grace)
    logging.shutdown()
    os._exit(1)
