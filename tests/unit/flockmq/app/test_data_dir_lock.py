"""flockmq.app.data_dir_lock: one broker per data dir. A second lock on the same
dir is refused naming the holder's pid (or saying that its supervisor has
exited while its children still hold the lock); closing the descriptor
releases it, so nothing stale is left to remove."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flockmq.app.data_dir_lock import LOCK_FILE, DataDirInUse, lock_data_dir
from flockmq.config import ConfigError


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    fd = lock_data_dir(str(tmp_path))
    try:
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirInUse) as refused:
            lock_data_dir(str(tmp_path))
        assert isinstance(refused.value, ConfigError)  # `flockmq serve` exits 2 with it
        assert f"in use by another flockmq (pid {os.getpid()})" in str(refused.value)
        assert str(tmp_path) in str(refused.value)
    finally:
        os.close(fd)


def test_closing_releases_the_lock(tmp_path: Path) -> None:
    os.close(lock_data_dir(str(tmp_path)))
    fd = lock_data_dir(str(tmp_path))  # a stale file is not a lock
    os.close(fd)


def test_a_holder_whose_supervisor_exited_is_named_as_such(tmp_path: Path) -> None:
    fd = lock_data_dir(str(tmp_path))
    try:
        gone = 2**22 + 12345  # above the largest pid Linux allows (2**22): none such
        os.pwrite(fd, f"{gone}\n".encode(), 0)
        with pytest.raises(DataDirInUse, match=f"supervisor \\(pid {gone}\\) has exited"):
            lock_data_dir(str(tmp_path))
    finally:
        os.close(fd)


def test_an_unreadable_pid_is_not_an_error(tmp_path: Path) -> None:
    fd = lock_data_dir(str(tmp_path))
    try:
        os.ftruncate(fd, 0)  # its holder has not written it yet
        with pytest.raises(DataDirInUse, match="in use by another flockmq;"):
            lock_data_dir(str(tmp_path))
    finally:
        os.close(fd)
