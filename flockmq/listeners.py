"""Listeners: where the broker accepts clients, and how (issue 11).

Declared in the TOML config as `[[listeners]]` tables with Mosquitto's key
names; without any, one plain MQTT listener on `host:port` (the `--host` and
`--port` flags). Every acceptor serves every listener (SO_REUSEPORT).

Invariants checked here, once, before any process starts: every key is known
and of its type; a TLS listener has both `certfile` and `keyfile`, and the
files exist; `require_certificate` needs a `cafile`; `use_identity_as_username`
needs `require_certificate`; and (Mosquitto 2.0's rule) a listener that is not
on a loopback address and has no way to authenticate a client — no password
file, no client certificates — refuses to start unless anonymous clients are
allowed explicitly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("mqtt", "websockets")
WEBSOCKET_PATHS_DEFAULT = "/mqtt"


class ListenerError(ValueError):
    """A listener that cannot be used: the message names the listener and the key."""


@dataclass(frozen=True, slots=True)
class Listener:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "mqtt"  # or "websockets"
    certfile: str | None = None
    keyfile: str | None = None
    cafile: str | None = None
    require_certificate: bool = False
    use_identity_as_username: bool = False
    # None: the top-level `allow_anonymous`
    allow_anonymous: bool | None = None
    max_connections: int = -1  # per acceptor; -1: no limit (Mosquitto's default)
    path: str = WEBSOCKET_PATHS_DEFAULT  # WebSocket only ("/" is accepted too)
    ciphers: str | None = None  # OpenSSL's defaults unless set
    max_websocket_message: int = 1024 * 1024  # WebSocket only: bytes of one message

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def scheme(self) -> str:
        if self.protocol == "websockets":
            return "wss" if self.tls else "ws"
        return "mqtts" if self.tls else "mqtt"

    @property
    def name(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def anonymous_allowed(self, default: bool | None, password_file: bool) -> bool:
        """Whether clients with no username (and no certificate identity) may
        connect: this listener's `allow_anonymous`, else the top-level one,
        else only where nothing is set up to authenticate anyone: a loopback
        listener with no password file (what `make run` starts)."""
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        if default is not None:
            return default
        return self.loopback and not password_file and not self.require_certificate


KEYS = {f.name: f for f in dataclasses.fields(Listener)}


def parse_listener(raw: dict[str, Any], where: str) -> Listener:
    """A Listener from one `[[listeners]]` table; ListenerError names `where`."""
    values: dict[str, Any] = {}
    defaults = Listener()
    for key, value in raw.items():
        key = key.replace("-", "_")
        if key not in KEYS:
            raise ListenerError(f"{where}: unknown key {key!r}")
        expected = type(getattr(defaults, key))
        if key in ("certfile", "keyfile", "cafile", "ciphers"):
            expected = str
        elif key == "allow_anonymous":
            expected = bool
        if isinstance(value, bool) and expected is not bool:
            raise ListenerError(f"{where}: {key}: expected {expected.__name__}, got {value!r}")
        if not isinstance(value, expected):
            raise ListenerError(f"{where}: {key}: expected {expected.__name__}, got {value!r}")
        values[key] = value
    listener = Listener(**values)
    check_listener(listener, where)
    return listener


def check_listener(listener: Listener, where: str) -> None:
    if not 0 < listener.port < 65536:
        raise ListenerError(f"{where}: port: {listener.port} is not a TCP port (1-65535)")
    if listener.protocol not in PROTOCOLS:
        raise ListenerError(f"{where}: protocol: {listener.protocol!r} is not one of {PROTOCOLS}")
    if (listener.certfile is None) != (listener.keyfile is None):
        raise ListenerError(f"{where}: TLS needs both certfile and keyfile")
    for key in ("certfile", "keyfile", "cafile"):
        path = getattr(listener, key)
        if path is not None and not Path(path).is_file():
            raise ListenerError(f"{where}: {key}: {path} does not exist")
    if listener.cafile is not None and not listener.tls:
        raise ListenerError(f"{where}: cafile needs TLS (certfile and keyfile)")
    if listener.require_certificate and listener.cafile is None:
        raise ListenerError(f"{where}: require_certificate needs a cafile to check them with")
    if listener.use_identity_as_username and not listener.require_certificate:
        raise ListenerError(f"{where}: use_identity_as_username needs require_certificate")
    if listener.max_connections == 0 or listener.max_connections < -1:
        raise ListenerError(f"{where}: max_connections: -1 (no limit) or a positive number")
    if not listener.path.startswith("/"):
        raise ListenerError(f"{where}: path: {listener.path!r} does not start with '/'")
    if listener.max_websocket_message <= 0:
        raise ListenerError(f"{where}: max_websocket_message: must be positive")


def check_exposure(
    listeners: list[Listener], allow_anonymous: bool | None, password_file: str | None
) -> None:
    """Secure by default (Mosquitto 2.0): a listener reachable from other hosts
    with no way to authenticate anyone refuses to start unless anonymous
    clients were allowed on purpose."""
    for listener in listeners:
        if listener.loopback or password_file is not None or listener.require_certificate:
            continue
        explicit = listener.allow_anonymous
        if explicit is None:
            explicit = allow_anonymous
        if explicit is not True:
            raise ListenerError(
                f"listener {listener.name}: not on a loopback address, and there is no "
                "password_file and no require_certificate, so anyone could connect; set "
                "allow_anonymous = true if that is what you want"
            )
