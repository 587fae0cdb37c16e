"""Authentication (issue 11): a password file in Mosquitto's format, with real
clients (paho 3.1.1 and 5, mosquitto_pub where installed): the right password
connects, anything else gets the MQTT answer, a guesser is slowed down while
the right password is answered at once, and no password reaches the log."""

from __future__ import annotations

import itertools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.frontend.codec import Connack, Connect, StreamDecoder, encode

from .broker import Broker
from .clients import Client, unique, wait_for

ACL = """\
topic readwrite e2e/#
user alice
topic readwrite alice/#
user bob
topic readwrite bob/#
"""
# auth_failure_delay: an address's first failure is answered at once, the
# next after this, then twice as long each time. Each test fails from its own
# source address (127.0.x.y), so they do not slow each other down. Only the
# guesser waits it out (0 + 1 + 2 of it, then 4 held): 0.5 s keeps that to
# 3.5 s, and the held answer still takes 2 s, against a paho CONNECT's few ms.
FIRST_DELAY = 0.5
_addresses = itertools.count(2)


def own_address() -> str:
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    where = tmp_path_factory.mktemp("auth")
    pw = where / "passwords"
    runner = CliRunner()
    assert runner.invoke(main, ["passwd", "-c", "-b", str(pw), "alice", "s3cret!"]).exit_code == 0
    if shutil.which("mosquitto_passwd"):  # an entry mosquitto_passwd wrote, where it exists
        subprocess.run(["mosquitto_passwd", "-b", str(pw), "bob", "hunter2"], check=True)
    else:
        assert runner.invoke(main, ["passwd", "-b", str(pw), "bob", "hunter2"]).exit_code == 0
    (where / "acl").write_text(ACL)
    (where / "flockmq.toml").write_text(
        f'password_file = "{pw}"\nacl_file = "{where / "acl"}"\n'
        f"auth_failure_delay = {FIRST_DELAY}\n"
    )
    b = Broker(
        where,
        acceptors=1,
        extra_args=["--config", str(where / "flockmq.toml")],
        credentials=("alice", b"s3cret!"),
    )
    b.start()
    yield b
    b.stop()


def connack(
    broker: Broker, username: str | None, password: bytes | None, level: int, source: str
) -> int:
    with socket.create_connection(
        ("127.0.0.1", broker.port), timeout=60, source_address=(source, 0)
    ) as sock:
        sock.sendall(encode(Connect(unique("auth"), level, True, 30, username, password), level))
        return read_connack(sock, level)


def read_connack(sock: socket.socket, level: int = 4) -> int:
    decoder = StreamDecoder(protocol_level=level)
    while (packet := decoder.next_packet()) is None:
        data = sock.recv(4096)
        assert data, "closed without a CONNACK"
        decoder.feed(data)
    assert isinstance(packet, Connack)
    return packet.reason_code


def test_the_right_password_connects_and_its_acl_section_applies(broker: Broker) -> None:
    for protocol in (4, 5):
        alice = Client(broker.port, protocol=protocol, username="alice", password="s3cret!")
        alice.connect()
        assert alice.subscribe("alice/inbox", 1)[0] == 1
        assert alice.subscribe("bob/inbox", 1)[0] in (0x80, 0x87)
        alice.disconnect()
    bob = Client(broker.port, username="bob", password="hunter2")
    bob.connect()
    assert bob.subscribe("bob/inbox", 1)[0] == 1
    bob.disconnect()


@pytest.mark.parametrize(
    ("username", "password", "v3", "v5"),
    [
        ("alice", b"wrong", 4, 0x86),
        ("alice", None, 4, 0x86),
        ("mallory", b"s3cret!", 4, 0x86),
        ("admin", None, 4, 0x86),  # the name alone no longer gets anything
        (None, None, 5, 0x87),  # anonymous: not on a broker with a password file
    ],
)
def test_anything_else_gets_the_mqtt_answer(
    broker: Broker, username: str | None, password: bytes | None, v3: int, v5: int
) -> None:
    assert connack(broker, username, password, 4, own_address()) == v3
    assert connack(broker, username, password, 5, own_address()) == v5


def test_refusals_are_logged_with_client_and_peer_but_never_the_password(broker: Broker) -> None:
    before = broker.log().count("bad user name or password")
    source = own_address()
    assert connack(broker, "alice", b"not-this-one-xyzzy", 4, source) == 4
    wait_for(
        lambda: broker.log().count("bad user name or password") > before,
        30,
        "the log line of the refusal",
    )
    line = [ln for ln in broker.log().splitlines() if "bad user name or password" in ln][-1]
    assert "'alice'" in line and f"{source}:" in line and "client 'auth-" in line
    assert "xyzzy" not in broker.log()
    assert "s3cret" not in broker.log()


def test_a_guesser_waits_while_the_right_password_is_answered_at_once(broker: Broker) -> None:
    guesser = own_address()
    # three failures (answered after 0, 1 and 2 FIRST_DELAY): the fourth is
    # held 4 FIRST_DELAY
    for guess in (b"guess-1", b"guess-2", b"guess-3"):
        assert connack(broker, "alice", guess, 4, guesser) == 4
    held = socket.create_connection(
        ("127.0.0.1", broker.port), timeout=60, source_address=(guesser, 0)
    )
    started = time.monotonic()
    held.sendall(encode(Connect(unique("guess"), 4, True, 30, "alice", b"guess-4"), 4))
    # while that refusal is held, alice connects from the same address
    alice = Client(broker.port, username="alice", password="s3cret!", bind_address=guesser)
    alice.connect()
    held.setblocking(False)
    try:
        answered_before_alice = held.recv(4096)
    except BlockingIOError:
        answered_before_alice = b""
    held.setblocking(True)
    assert answered_before_alice == b""
    assert read_connack(held) == 4
    assert time.monotonic() - started >= 4 * FIRST_DELAY  # a lower bound: holds anywhere
    held.close()
    alice.disconnect()


needs_mosquitto_pub = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None,
    reason="mosquitto-clients is not installed (make test installs it where it can)",
)


@needs_mosquitto_pub
def test_mosquitto_pub_with_a_password(broker: Broker, tmp_path: Path) -> None:
    common = ["mosquitto_pub", "-p", str(broker.port), "-t", "bob/x", "-m", "hi", "-q", "1"]
    ok = subprocess.run([*common, "-u", "bob", "-P", "hunter2"], timeout=30, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [*common, "-u", "bob", "-P", "nope"], timeout=60, capture_output=True, text=True
    )
    assert bad.returncode != 0
    assert "not authori" in bad.stderr.lower() or "bad user" in bad.stderr.lower()


def test_a_broker_reachable_from_other_hosts_does_not_start_open(tmp_path: Path) -> None:
    from .broker import FLOCKMQ

    result = subprocess.run(
        [FLOCKMQ, "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "allow_anonymous = true" in result.stderr


def test_sighup_reloads_passwords_and_acl_without_dropping_anyone(tmp_path: Path) -> None:
    pw, acl = tmp_path / "passwords", tmp_path / "acl"
    runner = CliRunner()
    assert runner.invoke(main, ["passwd", "-c", "-b", str(pw), "alice", "one"]).exit_code == 0
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    (tmp_path / "flockmq.toml").write_text(f'password_file = "{pw}"\nacl_file = "{acl}"\n')
    b = Broker(
        tmp_path / "b",
        acceptors=2,
        extra_args=["--config", str(tmp_path / "flockmq.toml")],
        credentials=("alice", b"one"),
    )
    b.start()
    try:
        # ready means one acceptor answers: wait for both (each reads the
        # files when it starts, so a SIGHUP before then has nothing to reload)
        wait_for(lambda: "acceptor 1 listening" in b.log(), 30, "acceptor 1")
        wait_for(lambda: "acceptor 0 listening" in b.log(), 30, "acceptor 0")
        alice = Client(b.port, username="alice", password="one")
        alice.connect()
        assert alice.subscribe("shared/news", 1)[0] == 0x80  # not granted yet
        # alice's password is remembered by the acceptors that checked it
        # (from 8 addresses: the kernel spreads them over both acceptors)
        assert [connack(b, "alice", b"one", 4, own_address()) for _ in range(8)] == [0] * 8
        # carol is added, alice's password changes, alice may read shared/#;
        # a reload, no restart
        assert runner.invoke(main, ["passwd", "-b", str(pw), "carol", "two"]).exit_code == 0
        assert runner.invoke(main, ["passwd", "-b", str(pw), "alice", "uno"]).exit_code == 0
        acl.write_text("user alice\ntopic readwrite alice/#\ntopic read shared/#\n")
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: b.log().count("SIGHUP: ACL reloaded") >= 2,  # both acceptors
            30,
            "both acceptors to reload",
        )
        assert connack(b, "carol", b"two", 4, own_address()) == 0
        # the old password is not remembered past the reload; the new one works
        assert [connack(b, "alice", b"one", 4, own_address()) for _ in range(8)] == [4] * 8
        assert connack(b, "alice", b"uno", 4, own_address()) == 0
        assert alice.subscribe("shared/news", 1)[0] == 1  # the same connection, new rules
        # a password file that does not parse is refused: the old one stays
        pw.write_text("carol:xyzzy-in-clear\n")
        b.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: b.log().count("keeping the old password file") >= 2,
            30,
            "both acceptors to refuse the broken file",
        )
        assert connack(b, "carol", b"two", 4, own_address()) == 0
        assert "xyzzy-in-clear" not in b.log()
        alice.disconnect()
        assert not [c for c in b.children() if c.status() == "zombie"]
    finally:
        b.stop()
