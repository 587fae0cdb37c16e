"""flockmq.listeners and the configuration keys around it: [[listeners]]
tables with Mosquitto's key names, checked before any process starts, and
Mosquitto 2.0's rule that a broker reachable from other hosts does not start
open to anyone by accident."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from flockmq.config import ConfigError, load_config
from flockmq.listeners import Listener, ListenerError, check_exposure, parse_listener


def config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "flockmq.toml"
    path.write_text(text)
    return str(path)


def test_no_listeners_means_one_plain_listener_on_host_and_port(tmp_path: Path) -> None:
    config = load_config(None, {"port": 18830, "data_dir": str(tmp_path)})
    assert config.listener_list() == [Listener("127.0.0.1", 18830)]


def test_listener_tables_use_mosquittos_keys(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / name for name in ("c.pem", "k.pem", "ca.pem"))
    authority = trustme.CA()
    server = authority.issue_cert("localhost")
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    (tmp_path / "pw").write_text("")
    text = f"""
data_dir = "{tmp_path}"
password_file = "{tmp_path / "pw"}"
[[listeners]]
host = "0.0.0.0"
port = 8883
certfile = "{cert}"
keyfile = "{key}"
cafile = "{ca}"
require_certificate = true
use_identity_as_username = true
[[listeners]]
host = "0.0.0.0"
port = 8080
protocol = "websockets"
path = "/"
max_connections = 1000
"""
    config = load_config(config_file(tmp_path, text), {})
    tls, ws = config.listener_list()
    assert tls.tls
    assert tls.scheme == "mqtts"
    assert tls.use_identity_as_username
    assert ws.scheme == "ws"
    assert ws.path == "/"
    assert ws.max_connections == 1000


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"prot": 1}, "unknown key 'prot'"),
        ({"port": "1883"}, "port: expected int"),
        ({"port": True}, "port: expected int"),
        ({"port": 70000}, "is not a TCP port"),
        ({"protocol": "http"}, "protocol: 'http'"),
        ({"certfile": "{f}"}, "both certfile and keyfile"),
        ({"certfile": "{f}", "keyfile": "/nonexistent"}, "keyfile: /nonexistent does not exist"),
        ({"cafile": "{f}"}, "cafile needs TLS"),
        ({"certfile": "{f}", "keyfile": "{f}", "require_certificate": True}, "needs a cafile"),
        ({"use_identity_as_username": True}, "needs require_certificate"),
        ({"max_connections": 0}, "max_connections"),
        ({"path": "mqtt"}, "does not start with '/'"),
        ({"allow_anonymous": 1}, "allow_anonymous: expected bool"),
    ],
)
def test_a_bad_listener_is_refused_with_its_key(
    tmp_path: Path, table: dict[str, object], error: str
) -> None:
    exists = tmp_path / "exists.pem"
    exists.write_text("x")
    table = {k: v.format(f=exists) if isinstance(v, str) else v for k, v in table.items()}
    with pytest.raises(ListenerError, match="listeners\\[1\\]: .*" + error.replace("(", ".")):
        parse_listener(table, "listeners[1]")


def test_a_public_listener_with_nothing_to_authenticate_with_does_not_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="allow_anonymous = true"):
        load_config(None, {"host": "0.0.0.0", "data_dir": str(tmp_path)})
    # said on purpose, or a password file, or client certificates: it starts
    load_config(config_file(tmp_path, 'host = "0.0.0.0"\nallow_anonymous = true\n'), {})
    pw = tmp_path / "pw"
    pw.write_text("")
    load_config(None, {"host": "0.0.0.0", "password_file": str(pw), "data_dir": str(tmp_path)})
    # loopback stays open for `make run`
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure([Listener(host)], None, None)
    # a listener's own allow_anonymous = false wins over the top level's true
    with pytest.raises(ListenerError):
        check_exposure([Listener("0.0.0.0", allow_anonymous=False)], True, None)


def test_certificates_that_do_not_load_stop_serve(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    text = f'[[listeners]]\nport = 8883\ncertfile = "{junk}"\nkeyfile = "{junk}"\n'
    with pytest.raises(ConfigError, match="certfile/keyfile: cannot load"):
        load_config(config_file(tmp_path, text), {"data_dir": str(tmp_path)})


def test_a_bad_password_file_stops_serve_with_its_line(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("alice:plaintext\n")
    with pytest.raises(ConfigError, match=r"password_file: .*pw:1: user 'alice'"):
        load_config(None, {"password_file": str(pw), "data_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="cannot read password file"):
        load_config(None, {"password_file": str(tmp_path / "nope"), "data_dir": str(tmp_path)})
