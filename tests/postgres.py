"""A real PostgreSQL server for the tests: `initdb` into a temporary directory,
`pg_ctl start` on a free 127.0.0.1 port (its unix socket in that directory, no
system service), a fresh database per test, stopped at the end of the session, or by its
watchdog (tests/pg_watchdog.py) when the session is killed before it can.

Fixtures (registered by tests/conftest.py):

- `postgres_server` (session): the running server, started at its first use;
  when PostgreSQL is not installed (scripts/install_test_tools.sh installs
  Debian's `postgresql` with apt-get) or does not start, every test that uses
  it SKIPS, saying why;
- `postgres_dsn`: a libpq connection string to an empty database of the test's
  own, dropped after the test.

PostgreSQL refuses to run as root. Run as root (as here), initdb and the
server run as `nobody` (`runuser -u nobody --`, the temporary directory
chowned to it); the tests connect over TCP with `trust` authentication, which
is safe because the server listens on 127.0.0.1 only and lives for the session.

The cluster tests (tests/cluster/) reach it from network namespaces:
`listen_also(address, network)` adds the address of their bridge's host side
to the addresses it listens on and trusts that private network in pg_hba.conf
(a restart on the same port: databases stay, connections open at that moment
are cut, which is why only a session fixture of the cluster tests calls it,
while no other test is running). Still nothing outside this machine reaches
it: the bridge only connects namespaces the tests created.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil
import pytest

from flockmq.app.probe import free_port

RUN_AS = "nobody"  # the non-root user the server runs as when the tests run as root


def find_bindir() -> str | None:
    """The directory of initdb/pg_ctl: on PATH, or Debian's newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return os.path.dirname(on_path)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return os.path.dirname(found[-1]) if found else None


@dataclass
class PostgresServer:
    bindir: str
    base: str  # the temporary directory: data/, the socket and the log
    port: int
    as_user: list[str]  # the command prefix that runs a program as the server's user
    pid: int = 0
    watchdog: subprocess.Popen[bytes] | None = None  # tests/pg_watchdog.py
    listen: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    _databases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def log_path(self) -> str:
        return os.path.join(self.base, "server.log")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [*self.as_user, *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")

    def start(self) -> None:
        self._run(
            os.path.join(self.bindir, "initdb"),
            *("-D", self.data, "-U", "postgres", "-A", "trust"),
            *("-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
        )
        self._run(
            os.path.join(self.bindir, "pg_ctl"),
            *("-D", self.data, "-l", self.log_path, "-o", self._options()),
            *("-w", "-t", "60", "start"),
            timeout=90,
        )
        self._read_pid()

    def _options(self) -> str:
        return f"-c listen_addresses={','.join(self.listen)} -p {self.port} -k {self.base}"

    def _read_pid(self) -> None:
        with open(os.path.join(self.data, "postmaster.pid")) as fh:
            self.pid = int(fh.readline())

    def listen_also(self, address: str, network: str) -> None:
        """Listen on `address` too and trust connections from `network` (a
        CIDR): a restart on the same port (see the module docstring)."""
        if address in self.listen:
            return
        with open(os.path.join(self.data, "pg_hba.conf"), "a") as fh:
            fh.write(f"host all all {network} trust\n")
        self.listen.append(address)
        self._run(
            os.path.join(self.bindir, "pg_ctl"),
            *("-D", self.data, "-l", self.log_path, "-o", self._options()),
            *("-m", "fast", "-w", "-t", "60", "restart"),
            timeout=90,
        )
        self._read_pid()
        _wait_accepting(self)

    def stop(self) -> None:
        """`pg_ctl stop` (fast), and if that fails SIGKILL the postmaster by its PID."""
        if not self.pid:
            return
        try:
            self._run(
                os.path.join(self.bindir, "pg_ctl"),
                *("-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"),
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = 0

    def create_database(self) -> str:
        import psycopg

        name = f"test_{next(self._databases)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def log(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as fh:
            return fh.read()
        return ""


def _as_user_prefix(base: str) -> list[str]:
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root, and runuser (util-linux) is missing")
    user = pwd.getpwnam(RUN_AS)
    os.chown(base, user.pw_uid, user.pw_gid)
    return [runuser, "-u", RUN_AS, "--"]


def start_server() -> PostgresServer:
    """A started server; pytest.skip (with the reason) when there is none to start."""
    bindir = find_bindir()
    if bindir is None or not os.path.exists(os.path.join(bindir, "initdb")):
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in"
            " /usr/lib/postgresql/*/bin): `make test-tools` installs it with apt-get as root"
        )
    base = tempfile.mkdtemp(prefix="flockmq-pg-")
    os.chmod(base, 0o755)
    try:
        server = PostgresServer(bindir, base, free_port(), _as_user_prefix(base))
        server.start()
    except (RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as exc:
        log = PostgresServer(bindir, base, 0, []).log()[-2000:]
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {exc}\n{log}")
    server.watchdog = start_watchdog(base)
    _wait_accepting(server)
    return server


def start_watchdog(base: str) -> subprocess.Popen[bytes]:
    """tests/pg_watchdog.py, in a session of its own (a kill of pytest's
    process group spares it): it stops the server and removes `base` when
    this test session's process goes away without doing so (kill -9)."""
    me = psutil.Process()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg_watchdog.py")
    return subprocess.Popen(
        [sys.executable, script, str(me.pid), repr(me.create_time()), base],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_watchdog(server: PostgresServer) -> None:
    """The session ends normally: the server is already stopped."""
    if server.watchdog is not None:
        server.watchdog.terminate()
        server.watchdog.wait(10)
        server.watchdog = None


def _wait_accepting(server: PostgresServer, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
        stop_watchdog(server)
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield postgres_server.dsn(name)
    postgres_server.drop_database(name)
