"""Start and stop the real broker for end-to-end tests, as a user does:
`flockmq serve` in a subprocess, on a free 127.0.0.1 port, stopped by its PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from flockmq.app.probe import free_port, mqtt_ready
from flockmq.app.proctitle import role_of


class MakeBroker(Protocol):
    """The make_broker fixture: a started broker of the test's own."""

    def __call__(self, *extra_args: str, acceptors: int = 2, workers: int = 2) -> Broker: ...


FLOCKMQ = str(Path(sys.executable).parent / "flockmq")


@dataclass
class Broker:
    data_dir: Path
    acceptors: int = 2
    workers: int = 2
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # username and password of the readiness probe's CONNECT (a broker with a
    # password file refuses an anonymous one)
    credentials: tuple[str, bytes] | None = None
    # what runs `flockmq serve` (["ip", "netns", "exec", NAME]: inside a
    # network namespace, tests/cluster/netns.py); it must exec the command,
    # so that the PID stays the supervisor's
    command_prefix: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Broker:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> Broker:
        """`flockmq serve` without waiting for a successful CONNECT (a broker
        whose shards are all served elsewhere refuses every one)."""
        if not self.port:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"broker-{self.port}.log"
        cmd = [
            *self.command_prefix,
            FLOCKMQ,
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--acceptors",
            str(self.acceptors),
            "--workers",
            str(self.workers),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "info",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"flockmq serve exited early:\n{self.log()}")
            if mqtt_ready(self.host, self.port, credentials=self.credentials) and self._all_up():
                return
            time.sleep(0.1)
        raise TimeoutError(f"broker not ready after {timeout}s:\n{self.log()}")

    def _all_up(self) -> bool:
        """Every acceptor and worker has been started: one CONNACK proves only
        the acceptor that answered it, and a test that records the broker's
        processes must not record them while another is still being spawned."""
        roles = set()
        for child in self.children():
            try:
                roles.add(role_of(child.cmdline(), child.name()))
            except psutil.NoSuchProcess:
                continue
        wanted = {("acceptor", i) for i in range(self.acceptors)}
        wanted |= {("worker", i) for i in range(self.workers)}
        return wanted <= roles

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def pid_of(self, role: str, index: int = 0) -> int:
        """The PID of a child by role and index, from its title (`flockmq
        worker 1`) or its name (`worker-1`), in either spawn mode."""
        for child in self.children():
            try:
                found = role_of(child.cmdline(), child.name())
            except psutil.NoSuchProcess:
                continue
            if found == (role, index):
                return child.pid
        raise LookupError(f"no {role} {index} among the broker's children")

    def acceptor_holding(self, local_port: int) -> int:
        """Which acceptor holds the client connection from 127.0.0.1:`local_port`
        (the kernel spreads connections over the acceptors: SO_REUSEPORT)."""
        for index in range(self.acceptors):
            proc = psutil.Process(self.pid_of("acceptor", index))
            for conn in proc.net_connections(kind="tcp"):
                if conn.raddr and conn.raddr.port == local_port and conn.laddr.port == self.port:
                    return index
        raise LookupError(f"no acceptor holds the connection from port {local_port}")

    def runtime_dir(self) -> Path:
        """The running broker's runtime directory (ipc sockets, config), as
        its supervisor names it in the data dir's discovery file."""
        where = json.loads((self.data_dir / "flockmq.control.json").read_text())
        return Path(where["runtime_dir"])

    def kill(self, role: str, index: int = 0) -> int:
        pid = self.pid_of(role, index)
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_supervisor(self) -> list[psutil.Process]:
        """kill -9 `flockmq serve` alone; returns the children it had (the
        caller waits for them, and kills them if they outlive the test)."""
        children = self.children()
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        return children

    def wait_restarted(self, role: str, index: int, old_pid: int, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = self.pid_of(role, index)
                if pid != old_pid:
                    return pid
            except LookupError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{role} {index} was not restarted")

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the supervisor and wait; return its exit status."""
        if self.proc is None:
            return 0
        children = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for child in children:  # never leave strays behind a failed test
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return code
