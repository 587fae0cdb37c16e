"""One broker per data directory: an exclusive `flock` on `DATA_DIR/flockmq.lock`.

Two brokers on one store would both restore, serve and expire the same
sessions, and each would write over what the other promised. The supervisor
takes the lock before it opens the store (which may migrate it) and before it
checks the port, so a second `flockmq serve` on the same data dir is refused
with a message naming the running broker's pid, which the file holds.

Invariants: the lock is held by an open file description, not by the file: it
is released by the kernel when the last process holding that description
exits, however it exits (kill -9 included), so there is never a stale lock to
remove by hand. The supervisor passes the descriptor to its children, so the
data dir stays locked until every process of the broker is gone, not only the
supervisor (children stop when the supervisor dies: `flockmq.app.parent_watch`).
The file itself is never deleted: unlinking a locked file would let a third
process lock a new file of the same name while the old one is still held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from flockmq.config import ConfigError

LOCK_FILE = "flockmq.lock"


class DataDirInUse(ConfigError):
    """Another broker holds the data directory's lock."""


def lock_data_dir(data_dir: str) -> int:
    """Lock `data_dir` for this process and write its pid into the lock file;
    returns the descriptor that holds the lock (keep it open)."""
    path = os.path.join(data_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(f"data_dir: cannot open {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        raise DataDirInUse(_in_use_message(data_dir, holder)) from None
    except OSError as exc:
        os.close(fd)
        raise ConfigError(f"data_dir: cannot lock {path}: {exc.strerror}") from exc
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode("ascii").strip())
    return None  # being written by its holder right now, or not ours


def _in_use_message(data_dir: str, holder: int | None) -> str:
    if holder is None:
        who = "another flockmq"
    elif _alive(holder):
        who = f"another flockmq (pid {holder})"
    else:
        # Its supervisor died; its children hold the lock while they stop.
        who = f"the processes of a flockmq whose supervisor (pid {holder}) has exited"
    return (
        f"data_dir {data_dir} is in use by {who}; stop it first, "
        "or give this broker another --data-dir"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
