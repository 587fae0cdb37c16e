"""Brokers under test, started and stopped as a user would, for `make bench`.

flockmq runs as `flockmq serve` from the venv, Mosquitto with a generated
config (persistence off, queues and in-flight window raised so that it does
not drop what a benchmark sends). Each broker runs in its own process group on
a free 127.0.0.1 port; it is ready when a CONNECT gets a CONNACK, and it is
stopped by its pid: SIGTERM to the group, SIGKILL after a timeout.

A `Security` gives both brokers the same listener: TLS with the same
certificate and key, and/or the same password file with anonymous clients
refused. flockmq then gets a generated TOML config with one `[[listeners]]`
table, Mosquitto the same keys in its config; the readiness probe speaks TLS
and sends a user's credentials.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flockmq.app.probe import free_port
from loadgen import wire
from loadgen.credentials import TlsFiles

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


MOSQUITTO_COMMON = """\
persistence false
max_connections -1
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages {inflight}
set_tcp_nodelay {nodelay}
connection_messages false
log_dest stderr
log_type error
log_type warning
"""


@dataclass(frozen=True, slots=True)
class Security:
    """What both brokers' one listener asks of a client: TLS (`tls`), a
    password (`password_file`, anonymous clients refused), or both."""

    tls: TlsFiles | None = None
    password_file: Path | None = None
    probe_user: tuple[str, str] | None = None  # credentials for the readiness probe


PLAIN = Security()


def mosquitto_conf(port: int, security: Security = PLAIN, nodelay: bool = False) -> str:
    """Mosquitto's config for a bench run on 127.0.0.1:`port`.

    `nodelay` is Mosquitto's `set_tcp_nodelay`, off by default as in
    Mosquitto's own default. Off, the kernel coalesces the packets Mosquitto
    writes one send() each into fewer segments while earlier ones are
    unacknowledged; on, every packet is a segment and its reader wakes for
    each. Measured (fan-in 4->1 QoS 0, native generator, 300k messages,
    alternating, 2 runs each): off 109-114k msg/s at 8.6-9.1 us of Mosquitto
    CPU per message, on 59-61k at 12.9-16.2 us. Throughput rows run Mosquitto
    as it ships; the latency row turns it on (Row.mosquitto_nodelay), as a
    latency-sensitive deployment would."""
    lines = [f"listener {port} 127.0.0.1"]
    if security.tls is not None:
        lines += [f"certfile {security.tls.certfile}", f"keyfile {security.tls.keyfile}"]
    if security.password_file is not None:
        lines += [f"password_file {security.password_file}", "allow_anonymous false"]
    else:
        lines.append("allow_anonymous true")
    if security != PLAIN:
        # Started as root, Mosquitto drops to the user `mosquitto`, which
        # cannot read the run's files (0600, in a 0700 directory): stay who
        # started it (ignored when that is not root).
        lines.append("user root")
    return (
        "\n".join(lines)
        + "\n"
        + MOSQUITTO_COMMON.format(inflight=FLOCKMQ_INFLIGHT, nodelay="true" if nodelay else "false")
    )


def flockmq_toml(port: int, security: Security) -> str:
    """flockmq's TOML config for a bench run: one listener on 127.0.0.1:`port`
    with the same certificate, key and password file as Mosquitto's."""
    top: list[str] = []
    if security.password_file is not None:
        top += [f"password_file = {_toml_str(security.password_file)}", "allow_anonymous = false"]
    listener = ["[[listeners]]", 'host = "127.0.0.1"', f"port = {port}"]
    if security.tls is not None:
        listener += [
            f"certfile = {_toml_str(security.tls.certfile)}",
            f"keyfile = {_toml_str(security.tls.keyfile)}",
        ]
    return "\n".join([*top, *listener]) + "\n"


def _toml_str(path: Path) -> str:
    """A TOML basic string of `path` (a temporary directory's: no quotes or
    backslashes to escape, but escape them anyway)."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def mqtt_ready(host: str, port: int, security: Security = PLAIN, timeout: float = 1.0) -> bool:
    """True when a CONNECT, over TLS and with the probe's credentials if
    `security` asks for them, gets CONNACK 0 within `timeout`."""
    user = security.probe_user
    connect = wire.encode_connect(
        f"ready-probe-{os.getpid()}",
        keepalive=10,
        username=user[0] if user else None,
        password=user[1].encode() if user else None,
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            sock = raw
            if security.tls is not None:
                context = ssl.create_default_context(cafile=str(security.tls.cafile))
                sock = context.wrap_socket(raw, server_hostname=host)
            sock.sendall(connect)
            reader = wire.PacketReader()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = sock.recv(4096)
                if not data:
                    return False
                for first, body in reader.feed(data):
                    ok = first >> 4 == wire.CONNACK and body[1:2] == b"\x00"
                    if ok:
                        sock.sendall(wire.DISCONNECT_BYTES)
                    return ok
    except (OSError, wire.WireError):  # ssl.SSLError is an OSError
        return False
    return False


@dataclass
class BrokerProcess:
    """One running broker: its label, port, supervisor pid and log."""

    kind: str  # "flockmq" or "mosquitto"
    args: list[str] = field(default_factory=list)  # flockmq: extra serve flags
    security: Security = PLAIN
    nodelay: bool = False  # mosquitto: set_tcp_nodelay (see mosquitto_conf)
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
            conf.write_text(mosquitto_conf(self.port, self.security, self.nodelay))
            return [mosquitto, "-c", str(conf)]
        flockmq = VENV_BIN / "flockmq"
        if not flockmq.exists():
            raise BrokerError(f"{flockmq} does not exist (pip install -e .)")
        where = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.security != PLAIN:
            toml = self.workdir / "flockmq.toml"
            toml.write_text(flockmq_toml(self.port, self.security))
            where = ["--config", str(toml)]
        return [
            str(flockmq),
            "serve",
            *where,
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
            if mqtt_ready("127.0.0.1", self.port, self.security):
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
