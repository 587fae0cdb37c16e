"""The TLS and password rows of `make bench`: the certificates and password
file made at run time, and the configs that give flockmq and Mosquitto the
same listener. No broker is started: flockmq's own config loader and TLS
context check what flockmq would be given, and a handshake in memory checks
that the load client trusts it."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import bench
import pytest
from loadgen.brokers import PLAIN, Security, flockmq_toml, mosquitto_conf
from loadgen.client import client_context
from loadgen.credentials import (
    TlsFiles,
    make_certificates,
    make_password_files,
    read_credentials,
)

from flockmq.config import load_config
from flockmq.frontend.passwords import PasswordFile
from flockmq.frontend.tls import server_context

FILES = TlsFiles(Path("/run/b/ca.pem"), Path("/run/b/server.pem"), Path("/run/b/server.key"))


def handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> str:
    """A TLS handshake between two contexts over memory BIOs: the version."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = [step(tls_client), step(tls_server)]
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done):
            version = tls_client.version()
            assert version is not None
            return version
    raise AssertionError("no handshake in 10 round trips")


def step(side: ssl.SSLObject) -> bool:
    """One handshake step; True once it is complete."""
    try:
        side.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


def test_certificates_serve_flockmq_and_the_load_client_trusts_them(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path)
    assert tls.keyfile.stat().st_mode & 0o077 == 0
    plain = load_config(None, {"data_dir": str(tmp_path / "data")}).listener_list()[0]
    listener = dataclasses.replace(plain, certfile=str(tls.certfile), keyfile=str(tls.keyfile))
    version = handshake(client_context(str(tls.cafile)), server_context(listener), "127.0.0.1")
    assert version in ("TLSv1.2", "TLSv1.3")


def test_the_load_client_refuses_another_ca(tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = make_certificates(tmp_path / "ours")
    theirs = make_certificates(tmp_path / "theirs")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(theirs.certfile, theirs.keyfile)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client_context(str(ours.cafile)), server, "127.0.0.1")


def test_password_file_holds_the_users_of_the_credentials(tmp_path: Path) -> None:
    files = make_password_files(tmp_path, users=3)
    text = files.password_file.read_text()
    assert all(line.split(":", 1)[1].startswith("$7$101$") for line in text.splitlines())
    passwords = PasswordFile.load(files.password_file)
    users = read_credentials(files.credentials)
    assert users == files.users and len(users) == 3
    for name, secret in users:
        assert passwords.check(name, secret.encode())
        assert not passwords.check(name, secret.encode() + b"x")
    assert files.password_file.stat().st_mode & 0o077 == 0


def test_read_credentials_keeps_colons_in_passwords(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("alice:a:b\n\nbob:\n")
    assert read_credentials(path) == (("alice", "a:b"), ("bob", ""))
    path.write_text("no separator\n")
    with pytest.raises(ValueError, match="credentials:1"):
        read_credentials(path)


def test_flockmq_config_is_one_tls_listener_with_passwords(tmp_path: Path) -> None:
    tls = make_certificates(tmp_path)
    files = make_password_files(tmp_path)
    toml = tmp_path / "flockmq.toml"
    toml.write_text(flockmq_toml(18830, Security(tls, files.password_file)))
    cfg = load_config(str(toml), {"data_dir": str(tmp_path / "data")})
    (listener,) = cfg.listener_list()
    assert (listener.host, listener.port, listener.tls) == ("127.0.0.1", 18830, True)
    assert listener.certfile == str(tls.certfile) and listener.keyfile == str(tls.keyfile)
    assert cfg.password_file == str(files.password_file)
    assert not listener.anonymous_allowed(cfg.allow_anonymous, password_file=True)


def test_flockmq_config_without_tls_is_plain(tmp_path: Path) -> None:
    files = make_password_files(tmp_path)
    toml = tmp_path / "flockmq.toml"
    toml.write_text(flockmq_toml(18831, Security(password_file=files.password_file)))
    (listener,) = load_config(str(toml), {"data_dir": str(tmp_path / "data")}).listener_list()
    assert not listener.tls


def directives(conf: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in conf.splitlines():
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def test_mosquitto_config_has_the_same_listener() -> None:
    security = Security(FILES, Path("/run/b/passwords"), probe_user=("u", "p"))
    conf = directives(mosquitto_conf(18832, security))
    assert conf["listener"] == ["18832 127.0.0.1"]
    assert conf["certfile"] == ["/run/b/server.pem"]
    assert conf["keyfile"] == ["/run/b/server.key"]
    assert conf["password_file"] == ["/run/b/passwords"]
    assert conf["allow_anonymous"] == ["false"]
    # as root, Mosquitto would drop to `mosquitto`, which cannot read the files
    assert conf["user"] == ["root"]


def test_plain_mosquitto_config_is_unchanged() -> None:
    conf = directives(mosquitto_conf(18833, PLAIN))
    assert conf["allow_anonymous"] == ["true"]
    assert "certfile" not in conf and "password_file" not in conf and "user" not in conf
    assert conf["persistence"] == ["false"]


def test_mosquitto_runs_with_its_default_nagle_except_where_latency_is_measured() -> None:
    # Mosquitto ships with set_tcp_nodelay false; turning it on halved its
    # fan-in throughput here, so throughput rows must not (brokers.py).
    assert directives(mosquitto_conf(18834, PLAIN))["set_tcp_nodelay"] == ["false"]
    assert directives(mosquitto_conf(18834, PLAIN, nodelay=True))["set_tcp_nodelay"] == ["true"]
    nodelay = {row.name for row in bench.ROWS if row.mosquitto_nodelay}
    assert nodelay == {"latency"}


def test_the_unique_users_row_gives_every_client_a_user_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench, "UNIQUE_USERS", 40)
    rows = {row.name: row for row in bench.ROWS}
    unique, shared = rows["connects-unique-users"], rows["connects-passwords"]
    assert unique.unique_users and unique.passwords and not shared.unique_users
    secrets = bench.Secrets.make(unique_users=True)
    try:
        for row, users in ((unique, 40), (shared, 5)):
            security = secrets.security(row)
            assert security.password_file is not None
            passwords = PasswordFile.load(security.password_file)
            credentials = read_credentials(Path(secrets.loadtest_args(row)[-1]))
            assert len(passwords) == len(set(credentials)) == users
            assert all(passwords.check(name, secret.encode()) for name, secret in credentials)
    finally:
        secrets.remove()
    # Without the unique file, that row cannot run: it says so.
    secrets = bench.Secrets.make()
    try:
        with pytest.raises(ValueError, match="unique"):
            secrets.security(unique)
    finally:
        secrets.remove()
