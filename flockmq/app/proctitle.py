"""What `ps` calls each broker process: its title and its name.

Every process titles itself (setproctitle, which rewrites the argv area that
`ps aux`, `top`, `htop`, `pgrep -f` and psutil's `cmdline()` read):

    flockmq supervisor [port 1883]
    flockmq acceptor 0 [port 1883]
    flockmq router 0
    flockmq worker 1
    flockmq auth 0

whatever the spawn mode (a forked child would otherwise show serve's command
line; an exec'd one `python -m flockmq.app.child ...`). Each child is also
named `ROLE-INDEX` (the kernel's comm, 15 bytes: `ps -o comm`, psutil's
`name()`); the supervisor keeps its own name. setproctitle sets the name to
the title's first 15 bytes too, so `name_process` puts it back afterwards.

`role_of` is the one reader of these: tests and scripts find a child's role
and index with it, from the title, from the name, or from the exec command
line a child has before it titles itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

import setproctitle

from flockmq.config import Config

PROGRAM = "flockmq"
ROLES = ("acceptor", "router", "worker", "auth")
CHILD_MODULE = "flockmq.app.child"
PR_SET_NAME = 15  # <linux/prctl.h>


def ports_tag(config: Config) -> str:
    """`[port 1883]`, or `[ports 1883,9001]` with several listeners."""
    ports = ",".join(str(listener.port) for listener in config.listener_list())
    return f"[{'ports' if ',' in ports else 'port'} {ports}]"


def supervisor_title(config: Config) -> str:
    return f"{PROGRAM} supervisor {ports_tag(config)}"


def child_title(role: str, index: int, config: Config) -> str:
    """An acceptor's title says its ports; the others' do not listen."""
    title = f"{PROGRAM} {role} {index}"
    return f"{title} {ports_tag(config)}" if role == "acceptor" else title


def child_name(role: str, index: int) -> str:
    return f"{role}-{index}"


def name_process(title: str, name: str | None = None) -> None:
    """Title this process and name it `name` (by default, keep its name).
    Call it before the process starts a thread: setproctitle moves the
    environment's strings out of the argv area it rewrites."""
    keep = read_name() if name is None else name
    setproctitle.setproctitle(title)
    if keep:
        set_name(keep)


def read_name() -> str:
    """This process's comm name, or "" where /proc is missing."""
    try:
        with open("/proc/self/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read().rstrip("\n")
    except OSError:
        return ""


def set_name(name: str) -> None:
    """The process's name (15 bytes at most) as `ps -o comm` shows it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def role_of(cmdline: list[str], name: str = "") -> tuple[str, int] | None:
    """(role, index) of a broker process, ("supervisor", 0) for a titled
    supervisor, else None. `cmdline` as psutil gives it (a title reads as
    one argument, or as words where the kernel split it); `name` its comm."""
    words = " ".join(cmdline).split()
    titled = words[:1] == [PROGRAM]
    if titled and len(words) >= 3 and words[1] in ROLES and words[2].isdigit():
        return (words[1], int(words[2]))
    # A forked child shows the supervisor's title until it titles itself,
    # but is named from the start: the name comes first.
    role, _, index = name.partition("-")
    if role in ROLES and index.isdigit():
        return (role, int(index))
    if CHILD_MODULE in cmdline:  # exec'd, not titled yet
        rest = cmdline[cmdline.index(CHILD_MODULE) + 1 :]
        if len(rest) >= 2 and rest[0] in ROLES and rest[1].isdigit():
            return (rest[0], int(rest[1]))
    if titled and words[1:2] == ["supervisor"]:
        return ("supervisor", 0)
    return None
