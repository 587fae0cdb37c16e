"""flockmq/curve.py and the cluster file's [security] (flockmq/cluster.py):
keys are written safely, every broken key file is an error naming it,
`serve --cluster` refuses them with a usage error, and a CURVE socket admits
a node's key and refuses (and counts) any other."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from click.testing import CliRunner

from flockmq import curve
from flockmq.app.cli import main
from flockmq.app.probe import free_port
from flockmq.cluster import ClusterError, parse_cluster
from flockmq.config import Config
from flockmq.curve import CurveKeyError, CurveKeys, read_node_keys, write_keypair
from tests.e2e.clients import wait_for

NODES = {"a": "127.0.0.1", "b": "127.0.0.2"}
CLUSTER = """
shards = 2
postgres_dsn = "host=10.9.0.1 dbname=flockmq"
{security}
[[nodes]]
name = "a"
address = "127.0.0.1"
[[nodes]]
name = "b"
address = "127.0.0.2"
"""


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    for name in NODES:
        write_keypair(str(directory), name)
    return directory


def test_a_keypair_is_written_with_a_private_secret_and_never_overwritten(keys: Path) -> None:
    assert stat.S_IMODE(os.stat(keys / "a.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    assert "secret-key" not in (keys / "a.key").read_text()
    public, secret = zmq.auth.load_certificate(str(keys / "a.key_secret"))  # pyzmq's format
    assert secret is not None and zmq.curve_public(secret) == public
    before = (keys / "a.key_secret").read_bytes()
    with pytest.raises(CurveKeyError, match=r"a\.key: exists"):
        write_keypair(str(keys), "a")
    assert (keys / "a.key_secret").read_bytes() == before


def test_a_node_reads_every_public_key_and_its_own_secret(keys: Path) -> None:
    a = read_node_keys(str(keys), "a", NODES)
    b = read_node_keys(str(keys), "b", NODES)
    assert a.nodes == b.nodes
    assert a.server_key("tcp://127.0.0.2:15550") == b.public
    assert a.secret != b.secret and a.secret not in repr(a)
    assert a.secret not in repr(Config(curve=a))


def test_the_keys_survive_the_trip_to_a_child(keys: Path) -> None:
    a = read_node_keys(str(keys), "a", NODES)
    assert Config.from_json(Config(curve=a).to_json()).curve == a


def _break(path: Path, text: str) -> None:
    path.chmod(0o600)
    path.write_text(text)


@pytest.mark.parametrize(
    ("file", "damage", "error"),
    [
        ("b.key", None, r"b\.key: No such file or directory"),
        ("a.key_secret", None, r"a\.key_secret: No such file or directory"),
        ("b.key", 'public-key = "short"\n', r"b\.key: public-key: not a 40-character Z85 key"),
        ("b.key", "curve\n", r"b\.key: public-key: missing"),
        ("b.key", 'public-key = "' + "~" * 40 + '"\n', "not a 40-character Z85 key"),
        ("a.key_secret", "x" * 5000, r"a\.key_secret: over 4096 bytes"),
    ],
)
def test_a_missing_or_malformed_key_file_is_an_error_naming_it(
    keys: Path, file: str, damage: str | None, error: str
) -> None:
    if damage is None:
        (keys / file).unlink()
    else:
        _break(keys / file, damage)
    with pytest.raises(CurveKeyError, match=error):
        read_node_keys(str(keys), "a", NODES)


def test_a_secret_others_can_read_or_of_another_node_is_refused(keys: Path) -> None:
    (keys / "a.key_secret").chmod(0o644)
    with pytest.raises(CurveKeyError, match=r"readable by others \(mode 644\): chmod 600"):
        read_node_keys(str(keys), "a", NODES)
    (keys / "a.key_secret").unlink()
    (keys / "b.key_secret").rename(keys / "a.key_secret")
    with pytest.raises(CurveKeyError, match=r"a\.key_secret: not the secret key of .*a\.key"):
        read_node_keys(str(keys), "a", NODES)


def test_two_nodes_with_one_key_are_refused(keys: Path) -> None:
    (keys / "b.key").write_bytes((keys / "a.key").read_bytes())
    with pytest.raises(CurveKeyError, match=r"b\.key: the same key as node a's"):
        read_node_keys(str(keys), "a", NODES)


@pytest.mark.parametrize(
    ("security", "error"),
    [
        ("", "security: missing: a [security] table with curve_keys = DIR"),
        ("[security]", "security: give one of curve_keys = DIR and insecure = true"),
        ('[security]\ncurve_keys = "k"\ninsecure = true', "security: give one of curve_keys"),
        ("[security]\ninsecure = 1", "security.insecure: expected true or false"),
        ("[security]\ncurve_keys = 1", "security.curve_keys: expected a directory's path"),
        ("[security]\ncurve = 1", "security: unknown key 'curve'"),
    ],
)
def test_the_security_table_is_required_and_checked(security: str, error: str) -> None:
    with pytest.raises(ClusterError, match=rf"^cluster\.toml: {re.escape(error)}"):
        parse_cluster(CLUSTER.format(security=security), "cluster.toml")


def test_keys_are_found_next_to_the_cluster_file_and_insecure_has_none(keys: Path) -> None:
    source = str(keys.parent / "cluster.toml")
    cluster = parse_cluster(CLUSTER.format(security='[security]\ncurve_keys = "keys"'), source)
    assert cluster.curve_keys == str(keys)
    assert cluster.config_values("b")["curve"] == read_node_keys(str(keys), "b", NODES)
    (keys / "b.key").unlink()
    with pytest.raises(ClusterError, match=rf"{source}: security.curve_keys: .*b\.key: No such"):
        cluster.config_values("a")
    insecure = parse_cluster(CLUSTER.format(security="[security]\ninsecure = true"), source)
    assert insecure.config_values("a")["curve"] is None


def test_serve_refuses_a_cluster_whose_keys_are_missing(keys: Path) -> None:
    path = keys.parent / "cluster.toml"
    path.write_text(CLUSTER.format(security='[security]\ncurve_keys = "keys"'))
    (keys / "a.key_secret").unlink()
    result = CliRunner().invoke(main, ["serve", "--cluster", str(path), "--node", "a"])
    assert result.exit_code == 2
    assert f"{path}: security.curve_keys: {keys}/a.key_secret: No such file" in result.output


def test_cluster_keys_writes_a_keypair_per_node_and_refuses_to_overwrite(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    result = CliRunner().invoke(main, ["cluster-keys", "a", "b", "--dir", str(directory)])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(directory)) == ["a.key", "a.key_secret", "b.key", "b.key_secret"]
    read_node_keys(str(directory), "b", NODES)
    result = CliRunner().invoke(main, ["cluster-keys", "b", "--dir", str(directory)])
    assert result.exit_code == 2 and "b.key: exists" in result.output
    result = CliRunner().invoke(main, ["cluster-keys", "../x", "--dir", str(directory)])
    assert result.exit_code == 2 and "is not a node name" in result.output


def test_a_curve_socket_admits_a_node_and_refuses_and_counts_any_other_key(keys: Path) -> None:
    a = read_node_keys(str(keys), "a", NODES)
    b = read_node_keys(str(keys), "b", NODES)
    endpoint = f"tcp://127.0.0.1:{free_port('127.0.0.1')}"
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        inbox = ctx.socket(zmq.PULL)
        curve.bind_curve(inbox, endpoint, a)
        refused = curve.refused()
        stranger_public, stranger_secret = zmq.curve_keypair()
        stranger = CurveKeys(stranger_public.decode(), stranger_secret.decode(), a.nodes)
        for keys_of in (stranger, b):
            push = ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            curve.connect_curve(push, endpoint, keys_of)
            push.send(keys_of.public.encode())
            if keys_of is stranger:  # refused before b connects: its frame can never come
                wait_for(lambda: curve.refused() == refused + 1, 10.0, "the refusal")
        assert inbox.poll(10_000)
        assert inbox.recv() == b.public.encode()
    finally:
        curve.stop_authenticator(ctx)  # its thread must not outlive the context
        ctx.destroy(linger=0)
