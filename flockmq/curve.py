"""CURVE between a cluster's hosts (issue 14): the keys of its nodes and the
set-up of every ZeroMQ socket that crosses a host (the bus's inboxes and
pipes, flockmq/bus.py; the supervisor's ROUTERS_LIVE, flockmq/app/routers_live.py;
the heartbeats, flockmq/app/heartbeats.py).

Each node has a CURVE keypair (`write_keypair`, `flockmq cluster-keys`):
`NODE.key` holds its public key and `NODE.key_secret` both (pyzmq's
certificate format, zmq.auth.load_certificate), the secret one written
0600 and refused when the group or others may read it. A directory with
every node's `NODE.key` and the node's own `NODE.key_secret` is all a host
needs (`read_node_keys`; the cluster file names the directory:
flockmq/cluster.py).

Invariants, when a cluster has keys (`CurveKeys`; the single-host ipc://
default and `insecure = true` clusters have none and nothing here runs):

- every tcp:// socket that binds is a CURVE server with the node's keypair
  (`bind_curve`), and its context has a ZAP handler (`_authenticator`,
  started before the first such bind, one thread per process; enforced:
  with no handler libzmq would admit any key) that accepts exactly the
  public keys of the cluster's nodes: a peer without the
  cluster's keys, or with a key of its own, never completes a handshake, so
  nothing it sends reaches a socket. A refused key is counted (`refused`,
  in `flockmq status`) and logged (at most once per LOG_EVERY seconds, with
  the count). A peer speaking no CURVE at all fails the handshake in libzmq
  before ZAP and is not counted (libzmq tells only a socket monitor);
- every tcp:// socket that connects is a CURVE client that requires the
  server to hold the secret key of the node whose address it connects to
  (`connect_curve`): a host that takes over a dead node's address cannot
  pass for it.

Keys are read once, at start: a changed key needs a restart of every node
(the README says so).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils import z85

log = logging.getLogger("flockmq.curve")

KEY_CHARS = 40  # a Z85-encoded 32-byte key
LOG_EVERY = 10.0  # seconds between two log lines of refused keys
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
MAX_KEY_FILE = 4096  # bytes: a certificate is ~300
ZAP_DOMAIN = b"flockmq-cluster"


class CurveKeyError(Exception):
    """A key file that is missing, unreadable or malformed: the message names it."""


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A node's keypair and every node's public key, Z85 text."""

    public: str
    secret: str = field(repr=False)
    nodes: tuple[tuple[str, str], ...]  # (address, public key) of every node, this one too

    def server_key(self, endpoint: str) -> str:
        """The public key of the node at `endpoint`'s address (tcp://A:P)."""
        address = endpoint.removeprefix("tcp://").rpartition(":")[0]
        for node_address, public in self.nodes:
            if node_address == address:
                return public
        raise ValueError(f"curve: {endpoint} is no node of the cluster")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurveKeys:
        """The keys a child reads back from the supervisor's JSON."""
        return cls(
            public=str(data["public"]),
            secret=str(data["secret"]),
            nodes=tuple((str(a), str(k)) for a, k in data["nodes"]),
        )


# --- key files ---------------------------------------------------------------
def write_keypair(directory: str, node: str) -> tuple[str, str]:
    """A new keypair for `node` in `directory` (made 0700 if missing): the
    paths of NODE.key and NODE.key_secret (0600). Never overwrites a key:
    CurveKeyError if either file exists."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    public, secret = zmq.curve_keypair()
    base = os.path.join(directory, node)
    paths = (base + PUBLIC_SUFFIX, base + SECRET_SUFFIX)
    for path in paths:
        if os.path.lexists(path):
            raise CurveKeyError(f"{path}: exists (a node's key is never overwritten)")
    _write_certificate(paths[1], public, secret, 0o600)
    _write_certificate(paths[0], public, None, 0o644)
    return paths


def _write_certificate(path: str, public: bytes, secret: bytes | None, mode: int) -> None:
    lines = [
        "#   ZeroMQ CURVE certificate of a flockmq cluster node (flockmq cluster-keys)",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write("\n".join(lines) + "\n")


def read_node_keys(directory: str, node: str, nodes: dict[str, str]) -> CurveKeys:
    """The keys of `node` from `directory`: every node's NODE.key
    (`nodes`: name -> address) and `node`'s NODE.key_secret, whose public
    key must be the one in its NODE.key. CurveKeyError naming the file
    for the first that is missing, unreadable, malformed or, for the
    secret, readable by group or others."""
    publics: dict[str, str] = {}
    for name in nodes:
        public, _ = _read_certificate(os.path.join(directory, name + PUBLIC_SUFFIX), False)
        for other, key in publics.items():
            if key == public:
                raise CurveKeyError(
                    f"{os.path.join(directory, name + PUBLIC_SUFFIX)}: the same key as"
                    f" node {other}'s (each node needs a keypair of its own)"
                )
        publics[name] = public
    secret_path = os.path.join(directory, node + SECRET_SUFFIX)
    public, secret = _read_certificate(secret_path, True)
    if public != publics[node] or zmq.curve_public(secret.encode()).decode() != public:
        raise CurveKeyError(
            f"{secret_path}: not the secret key of the public key in"
            f" {os.path.join(directory, node + PUBLIC_SUFFIX)}"
        )
    return CurveKeys(
        public=public,
        secret=secret,
        nodes=tuple((nodes[name], publics[name]) for name in nodes),
    )


def _read_certificate(path: str, secret: bool) -> tuple[str, str]:
    """(public, secret) of the certificate at `path` (secret "" unless asked)."""
    try:
        with open(path, "rb") as fh:
            if secret:
                mode = os.fstat(fh.fileno()).st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise CurveKeyError(
                        f"{path}: readable by others (mode {stat.S_IMODE(mode):o}):"
                        f" chmod 600 {path}"
                    )
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise CurveKeyError(f"{path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise CurveKeyError(f"{path}: over {MAX_KEY_FILE} bytes: not a key file")
    found = {"public-key": "", "secret-key": ""}
    for line in data.decode("ascii", "replace").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() in found:
            found[name.strip()] = value.strip().strip('"')
    wanted = ("public-key", "secret-key") if secret else ("public-key",)
    for name in wanted:
        if not _is_key(found[name]):
            what = "missing" if not found[name] else f"not a {KEY_CHARS}-character Z85 key"
            raise CurveKeyError(f"{path}: {name}: {what} (make keys with flockmq cluster-keys)")
    return found["public-key"], found["secret-key"]


def _is_key(text: str) -> bool:
    if len(text) != KEY_CHARS:
        return False
    try:
        return len(z85.decode(text)) == 32
    except (ValueError, KeyError, TypeError):  # z85.decode: a KeyError for a stray character
        return False


# --- sockets -----------------------------------------------------------------
def bind_curve(sock: zmq.Socket[Any], endpoint: str, keys: CurveKeys | None) -> None:
    """Bind `sock` at `endpoint`: a CURVE server that admits only the
    cluster's nodes when `keys` are given and the endpoint is tcp://."""
    if keys is not None and endpoint.startswith("tcp://"):
        _authenticator(sock.context, keys)  # before the first handshake can start
        # Without a ZAP handler libzmq admits any CURVE client that knows the
        # (public) server key; enforced, a missing handler admits none.
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
        sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.bind(endpoint)


def connect_curve(sock: zmq.Socket[Any], endpoint: str, keys: CurveKeys | None) -> None:
    """Connect `sock` to `endpoint`: a CURVE client that requires the
    server to be the node at the endpoint's address, when `keys` are
    given and the endpoint is tcp://."""
    if keys is not None and endpoint.startswith("tcp://"):
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public.encode())
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_key(endpoint).encode())
    sock.connect(endpoint)


class _Allowed:
    """zmq.auth's credentials provider: the cluster's public keys (Z85
    bytes); counts and logs the others. Runs in the ZAP thread."""

    def __init__(self, keys: CurveKeys) -> None:
        self.allowed = frozenset(public.encode() for _, public in keys.nodes)
        self.refused = 0
        self._logged_refused = 0
        self._logged_at = -LOG_EVERY

    def callback(self, domain: str, key: bytes) -> bool:
        if key in self.allowed:
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            log.warning(
                "curve: refused %d connection(s) from keys of no node of the cluster (last: %s)",
                self.refused - self._logged_refused,
                key.decode("ascii", "replace"),
            )
            self._logged_at, self._logged_refused = now, self.refused
        return False


_lock = threading.Lock()
_handlers: dict[tuple[int, int], tuple[Any, _Allowed]] = {}  # (pid, id(context)) -> ZAP


def _authenticator(context: zmq.Context[Any], keys: CurveKeys) -> None:
    """The ZAP handler of `context` in this process, started once (a
    forked child makes its own: the parent's thread is not in it)."""
    from zmq.auth.thread import ThreadAuthenticator

    slot = (os.getpid(), id(context))
    with _lock:
        if slot in _handlers:
            return
        allowed = _Allowed(keys)
        auth = ThreadAuthenticator(context, log=logging.getLogger("flockmq.curve.zap"))
        auth.configure_curve_callback(ZAP_DOMAIN.decode(), allowed)
        auth.start()
        _handlers[slot] = (auth, allowed)


def stop_authenticator(context: zmq.Context[Any]) -> None:
    """Stop the ZAP handler of `context` in this process, if any: before
    the context is destroyed (the tests'; a broker's lives as long as its
    process), whose thread would otherwise poll closed sockets."""
    with _lock:
        handler = _handlers.pop((os.getpid(), id(context)), None)
    if handler is not None:
        handler[0].stop()


def refused() -> int:
    """Handshakes this process's ZAP handlers refused (keys of no node)."""
    pid = os.getpid()
    return sum(allowed.refused for (p, _), (_, allowed) in _handlers.items() if p == pid)
