"""Brokers under test, started and stopped as a user would, for `make bench`.

flockmq runs as `flockmq serve` from the venv, Mosquitto with a generated
config (persistence off, queues and in-flight window raised so that it does
not drop what a benchmark sends). Each broker runs in its own process group on
a free 127.0.0.1 port; it is ready when a CONNECT gets a CONNACK, and it is
stopped by its pid: SIGTERM to the group, SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flockmq.app.probe import free_port, mqtt_ready

VENV_BIN = Path(sys.executable).parent
FLOCKMQ_INFLIGHT = 64  # flockmq's default max_inflight; Mosquitto is set to match


class BrokerError(Exception):
    """A broker could not be found, started or made ready."""


def _which_mosquitto() -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    return shutil.which("mosquitto", path=path)


def find_mosquitto(install: bool = True) -> str | None:
    """The mosquitto binary; installed with apt-get when missing and allowed."""
    found = _which_mosquitto()
    if found or not install or not shutil.which("apt-get"):
        return found
    print("bench: mosquitto not found, installing it with apt-get", file=sys.stderr)
    install_cmd = ["apt-get", "install", "-y", "mosquitto"]
    for commands in ([install_cmd], [["apt-get", "update"], install_cmd]):
        for cmd in commands:
            subprocess.run(cmd, capture_output=True, check=False, timeout=900)
        found = _which_mosquitto()
        if found:
            return found
    return None


MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages {inflight}
set_tcp_nodelay true
connection_messages false
log_dest stderr
log_type error
log_type warning
"""


@dataclass
class BrokerProcess:
    """One running broker: its label, port, supervisor pid and log."""

    kind: str  # "flockmq" or "mosquitto"
    args: list[str] = field(default_factory=list)  # flockmq: extra serve flags
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self, mosquitto: str | None) -> list[str]:
        assert self.workdir is not None
        if self.kind == "mosquitto":
            if mosquitto is None:
                raise BrokerError("mosquitto is not installed")
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(MOSQUITTO_CONF.format(port=self.port, inflight=FLOCKMQ_INFLIGHT))
            return [mosquitto, "-c", str(conf)]
        flockmq = VENV_BIN / "flockmq"
        if not flockmq.exists():
            raise BrokerError(f"{flockmq} does not exist (pip install -e .)")
        return [
            str(flockmq),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.workdir / "data"),
            *self.args,
        ]

    def start(self, mosquitto: str | None, timeout: float = 30.0) -> BrokerProcess:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))
        self.port = free_port()
        log = open(self.workdir / "broker.log", "wb")  # noqa: SIM115 - the broker owns it
        try:
            self.proc = subprocess.Popen(
                self.command(mosquitto),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"{self.kind} exited early:\n{self.log_tail()}")
            if mqtt_ready("127.0.0.1", self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise BrokerError(f"{self.kind} not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after `timeout`."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)
        # The supervisor may be gone with children left in its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.proc = None

    def log_tail(self, lines: int = 20) -> str:
        if self.workdir is None:
            return ""
        path = self.workdir / "broker.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
