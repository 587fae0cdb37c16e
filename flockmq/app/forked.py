"""Children forked from the supervisor (`spawn = "fork"`), sharing its pages.

With `spawn = "exec"` every child is a new interpreter
(`python -m flockmq.app.child ...`) that imports the modules its role needs
on its own: five private copies of the interpreter's and the libraries'
objects. With "fork" (the default), `flockmq serve` imports every role's modules once
(`preload_roles`, before it starts any thread), freezes them out of the
collector (`gc.freeze`: a collection would write to every object's header
and unshare its page), and forks each child from that image; a page stays
shared until one side writes to it. Measured on an idle broker with serve's
defaults: the summed PSS 119 -> 62 MiB, the summed USS 104 -> 41 MiB (RSS
counts shared pages in every process, and barely moves).

A forked child starts from the supervisor's state: it puts SIGTERM and
SIGINT back to their defaults and ignores SIGHUP (as `child.main` does),
closes every descriptor but stdio and the data dir's lock (the supervisor's
control socket and ZeroMQ's own, which it must not use), names itself
`ROLE-INDEX` at once (`ps -o comm`, psutil's `name()`), and runs the child
entry point, which titles it (`flockmq worker 1`: `ps aux`; until then its
command line is serve's; flockmq/app/proctitle.py), leaving by `os._exit`
so that nothing of the supervisor's is finalised twice.
`ForkedProcess` gives the supervisor the part of `subprocess.Popen` it
uses, waiting on a pidfd rather than polling.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import subprocess
import sys

from flockmq.app.proctitle import set_name

# Every module a role imports on its way to its event loop, and psutil,
# which every process imports at its first `flockmq status` request.
ROLE_MODULES = (
    "psutil",
    "uvloop",
    "flockmq.app.child",
    "flockmq.frontend.acceptor",
    "flockmq.router.process",
    "flockmq.workers.process",
    "flockmq.store.sqlite",
    "flockmq.store.committer",
)


def preload_roles(auth: bool, metrics: bool, websocket: bool) -> None:
    """Import every role's modules (the auth role's with `auth`, the
    router's metrics port with `metrics`, the WebSocket transport with
    `websocket`) and keep them out of every collection, so that forked
    children share their pages. Called before the supervisor starts a thread."""
    optional = {
        "flockmq.auth.process": auth,
        "flockmq.router.metrics": metrics,
        "flockmq.frontend.websocket_transport": websocket,
    }
    for name in [*ROLE_MODULES, *(name for name, wanted in optional.items() if wanted)]:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


class ForkedProcess:
    """The part of `subprocess.Popen` the supervisor uses, for a forked pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.pidfd: int | None = None
        with contextlib.suppress(OSError, AttributeError):  # pidfd: Linux 5.3+
            self.pidfd = os.pidfd_open(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self.pidfd is not None:
                    os.close(self.pidfd)
                    self.pidfd = None
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is not None:
            return self.returncode  # type: ignore[return-value]
        if timeout is None or self.pidfd is None:
            # blocking, or no pidfd to wait on with a timeout: waitpid itself
            if timeout is not None:
                select.select([], [], [], timeout)
                if self.poll() is None:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout)
                return self.returncode  # type: ignore[return-value]
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        readable, _, _ = select.select([self.pidfd], [], [], timeout)
        if not readable or self.poll() is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_child(argv: list[str], keep_fds: tuple[int, ...], name: str) -> ForkedProcess:
    """Fork, and run `flockmq.app.child.main(argv)` in the child."""
    pid = os.fork()
    if pid:
        return ForkedProcess(pid)
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        # ignored until an acceptor installs its reload handler (as child.main does)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _close_fds_but(keep_fds)
        set_name(name)
        from flockmq.app.child import main

        code = main(argv)
    except BaseException:  # the child's entry point: say why, never return into serve
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _close_fds_but(keep: tuple[int, ...]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
