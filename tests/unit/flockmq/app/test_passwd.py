"""`flockmq passwd`: mosquitto_passwd's commands on Mosquitto's file format.
Where Mosquitto is installed (`make bench` installs it), the files are also
checked against mosquitto_passwd and a real Mosquitto broker."""

from __future__ import annotations

import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from flockmq.app.cli import main
from flockmq.app.probe import free_port
from flockmq.frontend.codec import Connack, Connect, StreamDecoder, encode
from flockmq.frontend.passwords import PasswordFile


def passwd(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["passwd", *args], input=stdin)
    return result.exit_code, result.output


def test_create_add_change_and_delete_users(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    assert passwd("-c", "-b", str(pw), "alice", "secret")[0] == 0
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600
    assert passwd("-b", str(pw), "bob", "hunter2")[0] == 0
    assert passwd("-H", "sha512", "-b", str(pw), "carol", "old")[0] == 0
    assert passwd(str(pw), "carol", stdin="new\nnew\n")[0] == 0  # prompted, confirmed
    users = PasswordFile.load(pw)
    assert users.check("alice", b"secret")
    assert users.check("bob", b"hunter2")
    assert users.check("carol", b"new")
    assert not users.check("carol", b"old")
    assert "secret" not in pw.read_text()
    assert passwd("-D", str(pw), "bob")[0] == 0
    assert sorted(PasswordFile.load(pw).entries) == ["alice", "carol"]


def test_a_prompted_password_must_be_confirmed(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    code, output = passwd("-c", str(pw), "alice", stdin="one\ntwo\none\none\n")
    assert code == 0
    assert "do not match" in output.lower()
    assert PasswordFile.load(pw).check("alice", b"one")


def test_upgrade_hashes_a_plain_text_file_in_place(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("alice:secret\nbob:hunter2\n")
    pw.chmod(0o640)
    assert passwd("-U", str(pw))[0] == 0
    assert stat.S_IMODE(pw.stat().st_mode) == 0o640
    users = PasswordFile.load(pw)
    assert users.check("alice", b"secret")
    assert users.check("bob", b"hunter2")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["-b", "{pw}", "alice"], "-b needs the password"),
        (["{pw}", "alice", "secret"], "needs -b"),
        (["-c", "-D", "{pw}", "alice"], "cannot be combined"),
        (["-D", "{pw}", "nobody"], "nobody not found"),
        (["-b", "{pw}", "a:b", "x"], "cannot contain ':'"),
        (["-U", "{pw}", "alice"], "-U takes only the file"),
        (["-b", "{missing}", "alice", "x"], "use -c to create it"),
    ],
)
def test_bad_requests_fail_and_leave_the_file_alone(
    tmp_path: Path, args: list[str], error: str
) -> None:
    pw = tmp_path / "pw"
    assert passwd("-c", "-b", str(pw), "alice", "secret")[0] == 0
    before = pw.read_bytes()
    paths = {"pw": str(pw), "missing": str(tmp_path / "missing")}
    code, output = passwd(*(arg.format(**paths) for arg in args))
    assert code == 1
    assert error in output
    assert pw.read_bytes() == before


needs_mosquitto_passwd = pytest.mark.skipif(
    shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd is not installed"
)


@needs_mosquitto_passwd
def test_mosquitto_passwd_and_flockmq_passwd_share_a_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    assert passwd("-c", "-b", str(pw), "alice", "secret")[0] == 0
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "bob", "hunter2"], check=True)
    subprocess.run(["mosquitto_passwd", "-H", "sha512", "-b", str(pw), "carol", "x"], check=True)
    assert passwd("-b", str(pw), "dave", "d")[0] == 0
    users = PasswordFile.load(pw)
    assert sorted(users.entries) == ["alice", "bob", "carol", "dave"]
    assert users.check("bob", b"hunter2")
    assert users.check("carol", b"x")
    # mosquitto_passwd rewrites the file with our entries in it unchanged
    subprocess.run(["mosquitto_passwd", "-D", str(pw), "carol"], check=True)
    assert PasswordFile.load(pw).check("alice", b"secret")


def connack_code(port: int, username: str, password: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(encode(Connect("passwd-test", 4, True, 10, username, password), 4))
        decoder = StreamDecoder(protocol_level=4)
        while True:
            data = sock.recv(4096)
            assert data, "Mosquitto closed the connection without a CONNACK"
            decoder.feed(data)
            packet = decoder.next_packet()
            if packet is not None:
                assert isinstance(packet, Connack)
                return packet.reason_code


@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="mosquitto is not installed")
def test_mosquitto_accepts_the_entries_flockmq_passwd_writes(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    assert passwd("-c", "-b", str(pw), "alice", "secret")[0] == 0
    assert passwd("-H", "sha512", "-b", str(pw), "bob", "hunter2")[0] == 0
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    # `user root`: started as root, Mosquitto would switch to a user that
    # cannot read the 0600 file (as another user, it keeps its own)
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
        "persistence false\nuser root\n"
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                code = connack_code(port, "alice", b"secret")
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "Mosquitto did not start listening"
                time.sleep(0.05)  # polling for the listener; the assertion is on the answer
        assert code == 0
        assert connack_code(port, "bob", b"hunter2") == 0
        assert connack_code(port, "alice", b"wrong") == 5  # not authorized
    finally:
        proc.terminate()
        proc.wait(timeout=10)
