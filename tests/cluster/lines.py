"""A child process that reports on stdout, one line per event, and the test
that waits for those lines (with a timeout, never a sleep): the helpers the
cluster tests run inside network namespaces talk this way (mqtt_probe.py).

`ChildLines(popen)` reads the child's stdout on a thread into a bounded
queue; `expect(prefix, timeout)` returns the next line that starts with
`prefix`, or fails the test with every line seen and how the child ended.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from typing import Any

MAX_LINES = 10_000  # a child that prints more than this without being read is a bug


class ChildLines:
    def __init__(self, popen: subprocess.Popen[Any]) -> None:
        assert popen.stdout is not None, "start the child with stdout=subprocess.PIPE, text=True"
        self.popen = popen
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue(MAX_LINES)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """The next line starting with `prefix` (earlier lines are skipped,
        and kept in `seen` for the failure message)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0))
            except queue.Empty:
                raise AssertionError(
                    f"no line {prefix!r} within {timeout}s; seen: {self.seen}"
                ) from None
            if line is None:
                self._lines.put(None)  # stays at the end for the next caller
                raise AssertionError(
                    f"no line {prefix!r}: the child ended ({self.popen.wait()}); seen: {self.seen}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None, "start the child with stdin=subprocess.PIPE"
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def stop(self, timeout: float = 10.0) -> None:
        """Kill the child (by its PID, through Popen) and wait for it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout)
        self._thread.join(timeout)
