"""Hosts for the cluster tests (issue 14) on one machine: Linux network
namespaces on a bridge, created and removed by the tests.

A `Network` is one bridge in the root namespace with an address of its own
(`host_address`, .1 of a private /24: where the tests' PostgreSQL listens for
the namespaces) and any number of `Host`s. Each host is a namespace with its
loopback up and one veth pair: `eth0` inside, with the host's address (.2,
.3, ... of the /24), its peer enslaved to the bridge. Every host reaches
every other host and the bridge's address; the root namespace (the test
process) reaches every host's address through the bridge.

- `Host.command(*args)` is the argv that runs a program inside the
  namespace (`ip netns exec NAME ...`, which execs it: the PID of the Popen
  is the program's PID); `Host.run` and `Host.popen` run it.
- `Host.link_down()` / `Host.link_up()` take `eth0` of the host down and up:
  the "cut its network" failure. Its processes live on; nothing reaches
  them and they reach nothing but their own loopback until the link is up.
- `Network.remove()` (and `Host.remove()`) kill what still runs in the
  namespaces (SIGKILL, by the PIDs `ip netns pids` lists: only processes
  started inside these namespaces, hence by the tests), then delete the
  namespaces (which deletes their veth pairs) and the bridge.

Names are unique per test session and short (interface names have at most
15 bytes): `fmq` + a random 5-character token, then `br` for the bridge,
`v<n>` for a host's veth end on the bridge, `-<host>` for a namespace. So
parallel sessions never clash. Each session writes a record
(STATE_DIR/<token>.json: its PID and that process's start time) before it
creates anything and deletes it after it has removed everything. At the
start of a session, under a lock (STATE_DIR/.lock), every object named
`fmq<token>...` whose record is missing, or whose owner is no longer running
(killed runs: kill -9, a lost container exec), is removed; the namespaces
and bridges of a session still running are left alone, however old. The /24
is chosen under the same lock among 10.213.0.0/16, avoiding every IPv4
network already on a link or in a route.

Not handled: where br_netfilter hands bridged frames to an iptables FORWARD
chain that drops them (a Docker host's default), the hosts do not reach
each other, and the smoke tests (tests/cluster/test_netns.py) fail on their
first exchange. Here the chain is empty (no iptables at all).

`unavailable()` says why this cannot run here (not Linux, not root, no `ip`),
and NetnsUnavailable is raised when creating the bridge or the session's
first namespace fails (`Network.create`, `Network.add_host`); the fixtures
(tests/cluster/conftest.py) turn both into a skip that says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil

PREFIX = "fmq"
STATE_DIR = "/run/flockmq-netns"
POOL = ipaddress.IPv4Network("10.213.0.0/16")  # the /24s a network is chosen from
INNER = "eth0"  # the host's interface, inside its namespace
MAX_HOSTS = 200  # .2 to .201 of the /24
IP_TIMEOUT = 30.0  # seconds for one `ip` command (they take milliseconds)


class NetnsError(Exception):
    """An `ip` command failed: the message has the command and its stderr."""


class NetnsUnavailable(NetnsError):
    """Namespaces cannot be created here: the message says why."""


def unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux's; this is {sys.platform}"
    if os.geteuid() != 0:
        return "creating network namespaces (ip netns add) needs root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing (apt-get install iproute2)"
    return None


def ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout, NetnsError with its stderr when it fails."""
    cmd = ["ip", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"{' '.join(cmd)}: no answer in {IP_TIMEOUT}s") from exc
    if out.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


@dataclass
class Host:
    name: str  # the tests' name for it ("a")
    netns: str  # the kernel's name of the namespace
    address: str
    veth: str  # the veth end on the bridge, in the root namespace

    def command(self, *args: str) -> list[str]:
        """The argv running `args` inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `args` inside the namespace to its end (text output captured)."""
        return subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `args` inside the namespace (kwargs as subprocess.Popen's)."""
        return subprocess.Popen(self.command(*args), **kwargs)

    def link_down(self) -> None:
        ip("-n", self.netns, "link", "set", INNER, "down")

    def link_up(self) -> None:
        ip("-n", self.netns, "link", "set", INNER, "up")

    def pids(self) -> list[int]:
        """The processes running inside the namespace."""
        return [int(p) for p in ip("netns", "pids", self.netns).split()]

    def remove(self) -> None:
        """Kill what runs inside, delete the veth pair and the namespace (the
        kernel destroys a deleted namespace's interfaces later, on its own)."""
        _remove_netns(self.netns, self.veth)


@dataclass
class Network:
    token: str
    subnet: ipaddress.IPv4Network
    hosts: dict[str, Host] = field(default_factory=dict)
    _next: int = 0  # the index of the next host (its address and veth name)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.token}br"

    @property
    def host_address(self) -> str:
        """The bridge's own address: the root namespace, as the hosts see it."""
        return str(self.subnet.network_address + 1)

    @classmethod
    def create(cls) -> Network:
        """A bridge with its address, after removing leftovers of dead
        sessions; NetnsUnavailable when it cannot be created here."""
        reason = unavailable()
        if reason:
            raise NetnsUnavailable(reason)
        try:
            with state_lock():
                return cls._create_locked()
        except OSError as exc:  # STATE_DIR (in /run) cannot be written
            raise NetnsUnavailable(f"{STATE_DIR}: {exc}") from exc

    @classmethod
    def _create_locked(cls) -> Network:
        remove_leftovers()
        network = cls(_new_token(), _free_subnet())
        _write_record(network)
        try:
            ip("link", "add", network.bridge, "type", "bridge")
            ip("addr", "add", f"{network.host_address}/24", "dev", network.bridge)
            ip("link", "set", network.bridge, "up")
        except NetnsError as exc:
            network.remove()
            raise NetnsUnavailable(f"cannot create a bridge: {exc}") from exc
        return network

    def add_host(self, name: str) -> Host:
        """A new namespace on the bridge, its link and loopback up."""
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        if self._next >= MAX_HOSTS or not name.isalnum() or len(name) > 8:
            raise ValueError(f"host {name!r}: 1-8 letters or digits, at most {MAX_HOSTS} hosts")
        index, self._next = self._next, self._next + 1
        host = Host(
            name,
            f"{PREFIX}{self.token}-{name}",
            str(self.subnet.network_address + 2 + index),
            f"{PREFIX}{self.token}v{index}",
        )
        try:
            ip("netns", "add", host.netns)
        except NetnsError as exc:
            if index == 0:  # the first namespace of the session: this machine refuses them
                raise NetnsUnavailable(f"cannot create a network namespace: {exc}") from exc
            raise
        self.hosts[name] = host
        try:
            ip("link", "add", host.veth, "type", "veth", "peer", "name", INNER, "netns", host.netns)
            ip("link", "set", host.veth, "master", self.bridge, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", INNER)
            ip("-n", host.netns, "link", "set", INNER, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
        except NetnsError:
            self.remove_host(name)
            raise
        return host

    def remove_host(self, name: str) -> None:
        host = self.hosts.pop(name, None)
        if host is not None:
            host.remove()

    def remove(self) -> None:
        """Remove every host, the bridge and the session's record; what
        cannot be removed is left to the next session's cleanup."""
        for name in list(self.hosts):
            with contextlib.suppress(NetnsError):
                self.remove_host(name)
        with contextlib.suppress(NetnsError):
            if _link_exists(self.bridge):
                ip("link", "del", self.bridge)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(record_path(self.token))


# --- leftovers, records, names -----------------------------------------------


def remove_leftovers() -> list[str]:
    """Remove the namespaces and links of sessions that are gone (call it
    under state_lock); the names removed."""
    removed = []
    for netns in _our_netns():
        if not _alive(_token_of(netns)):
            with contextlib.suppress(NetnsError):
                _remove_netns(netns)
                removed.append(netns)
    for link in _our_links():
        if not _alive(_token_of(link)):
            with contextlib.suppress(NetnsError):
                ip("link", "del", link)
                removed.append(link)
    for record in os.listdir(STATE_DIR):
        token = record.removesuffix(".json")
        if record.endswith(".json") and not _alive(token):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(STATE_DIR, record))
    return removed


def _remove_netns(netns: str, veth: str | None = None) -> None:
    pids = [int(p) for p in ip("netns", "pids", netns).split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:  # dead before the namespace goes
        pids = [pid for pid in pids if _running(pid)]
        time.sleep(0.01)
    if veth is not None and _link_exists(veth):
        ip("link", "del", veth)  # now, and its peer with it
    ip("netns", "del", netns)


def _running(pid: int) -> bool:
    """Not gone and not a zombie (which has left its namespaces). Never
    waits for it: a Popen of the tests' own collects its status."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _token_of(name: str) -> str:
    return name[len(PREFIX) : len(PREFIX) + 5]


def _our_netns() -> list[str]:
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def _our_links() -> list[str]:
    links = []
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            links.append(name)
    return links


def _link_exists(name: str) -> bool:
    return name in _our_links()


def record_path(token: str) -> str:
    return os.path.join(STATE_DIR, f"{token}.json")


def _write_record(network: Network) -> None:
    me = psutil.Process()
    record = {"pid": me.pid, "started": me.create_time(), "subnet": str(network.subnet)}
    with open(record_path(network.token), "w") as fh:
        json.dump(record, fh)


def _alive(token: str) -> bool:
    """Whether the session `token` still runs: its record names a process
    that is running and started when the record says (not a reused PID)."""
    try:
        with open(record_path(token)) as fh:
            record = json.load(fh)
        return bool(abs(psutil.Process(record["pid"]).create_time() - record["started"]) < 1)
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return False


def _new_token() -> str:
    alphabet = string.ascii_lowercase + string.digits
    while True:
        token = "".join(secrets.choice(alphabet) for _ in range(5))
        if not os.path.exists(record_path(token)):
            return token


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POOL that no link address or route of this machine overlaps
    (call it under state_lock, which makes the choice and the bridge's
    address one step for parallel sessions)."""
    used = []
    for line in ip("-4", "-o", "addr", "show").splitlines():
        used.append(ipaddress.IPv4Interface(line.split()[3]).network)
    for line in ip("-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0]
        if first[0].isdigit():
            with contextlib.suppress(ValueError):
                used.append(ipaddress.IPv4Network(first, strict=False))
    candidates = list(POOL.subnets(new_prefix=24))
    start = secrets.randbelow(len(candidates))
    for subnet in candidates[start:] + candidates[:start]:
        if not any(subnet.overlaps(u) for u in used if u.prefixlen > 0):
            return subnet
    raise NetnsUnavailable(f"no free /24 left in {POOL}")


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    os.makedirs(STATE_DIR, exist_ok=True)
    with open(os.path.join(STATE_DIR, ".lock"), "w") as fh:
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetnsUnavailable(f"{STATE_DIR}/.lock held for 60 s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
