"""The native load generator (`scripts/loadgen/native/`, what
`make bench` drives its rows with) counts what really happened.

It is built here as bench.py builds it (skipped, saying why, without a C
compiler or OpenSSL's headers) and run against the real broker: a fan-in at
QoS 1 and 2 must deliver every message once and in order, and a connect-rate
with passwords must see every CONNECT accepted. Through test_loadtest's
misbehaving proxy (mqtt_proxy.py) a dropped PUBLISH must come out as exactly
one loss and a duplicate as exactly one duplicate, with exit status 1 where
the QoS level forbids it; a wrong password must come out as failed connects.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flockmq.app.probe import free_port

from .broker import Broker
from .mqtt_proxy import MqttProxy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from loadgen.credentials import make_certificates, make_password_files
from loadgen.generator import OPENSSL_HEADER, PYTHON, build_native, choose, compiler

COUNT = 2000
PROXIED_COUNT = 200


@pytest.fixture(scope="module")
def mqttload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if compiler() is None:
        pytest.skip("no C compiler (cc/gcc): the native generator cannot be built")
    if not OPENSSL_HEADER.exists():
        pytest.skip(f"no OpenSSL headers ({OPENSSL_HEADER}; apt-get install libssl-dev)")
    binary, why = build_native(binary=tmp_path_factory.mktemp("native") / "mqttload", install=False)
    assert binary is not None, why
    return binary


def run(mqttload: Path, port: int, *args: str) -> tuple[dict[str, Any], int]:
    cmd = [str(mqttload), *args, "--port", str(port), "--duration-limit", "30", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["generator"] == "native"
    return result, proc.returncode


def fanin(
    mqttload: Path, port: int, qos: int, count: int, *extra: str
) -> tuple[dict[str, Any], int]:
    return run(
        mqttload,
        port,
        "fanin",
        "--publishers",
        "2",
        "--qos",
        str(qos),
        "--count",
        str(count),
        "--processes",
        "2",
        "--drain-timeout",
        "3",
        *extra,
    )


@pytest.mark.parametrize("qos", [1, 2])
def test_fanin_delivers_every_message_once_and_in_order(
    broker: Broker, mqttload: Path, qos: int
) -> None:
    result, code = fanin(mqttload, broker.port, qos, COUNT, "--publishers", "4")
    assert result["errors"] == [] and result["timed_out"] is False
    assert result["processes"] == 2 and result["publishers"] == 4
    assert result["sent"] == result["completed"] == result["expected"] == COUNT
    assert result["delivered"] == result["received"] == COUNT
    assert (result["lost"], result["dup"], result["out_of_order"]) == (0, 0, 0)
    assert result["deliveries_per_s"] > 0 and result["latency_p50_us"] > 0
    assert code == 0


@pytest.mark.parametrize(
    ("scenario", "clients", "deliveries"),
    [
        (("fanout", "--subscribers", "5"), 6, 5 * 400),  # every subscriber gets all 400
        (("pairs", "--pairs", "5"), 10, 400),  # 80 per pair, each to its subscriber
    ],
)
def test_fanout_and_pairs_deliver_to_the_subscribers_that_should_have_them(
    broker: Broker, mqttload: Path, scenario: tuple[str, ...], clients: int, deliveries: int
) -> None:
    result, code = run(mqttload, broker.port, *scenario, "--qos", "1", "--count", "400")
    assert result["publishers"] + result["subscribers"] == clients
    assert result["expected"] == result["delivered"] == deliveries
    assert (result["lost"], result["dup"], result["out_of_order"], result["unexpected"]) == (
        0,
        0,
        0,
        0,
    )
    assert code == 0


def test_latency_is_paced_and_its_percentiles_are_ordered(broker: Broker, mqttload: Path) -> None:
    result, code = run(mqttload, broker.port, "latency", "--rate", "2000", "--count", "1000")
    assert result["delivered"] == 1000 and code == 0
    # 1000 messages at 2000/s: the last leaves 0.5 s after "go" (unpaced, it
    # would be well under 0.01 s; a busy machine may make it later, not earlier)
    assert 800 <= result["send_msgs_per_s"] <= 2100
    percentiles = [result[f"latency_{p}_us"] for p in ("p50", "p99", "p999", "max")]
    assert 0 < percentiles[0] <= percentiles[1] <= percentiles[2] <= percentiles[3]


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, int, Path]]:
    """A broker with a TLS listener (trustme's certificate for 127.0.0.1), its
    TLS port and the CA file that signed its certificate."""
    where = tmp_path_factory.mktemp("tls")
    files = make_certificates(where)
    plain, tls_port = free_port(), free_port()
    config = where / "flockmq.toml"
    config.write_text(
        f"[[listeners]]\nport = {plain}\n"
        f'[[listeners]]\nport = {tls_port}\ncertfile = "{files.certfile}"\n'
        f'keyfile = "{files.keyfile}"\n'
    )
    broker = Broker(where / "broker", extra_args=["--config", str(config)], port=plain)
    broker.start()
    yield broker, tls_port, files.cafile
    broker.stop()


def test_fanin_over_tls_delivers_every_message(
    tls_broker: tuple[Broker, int, Path], mqttload: Path
) -> None:
    _, port, cafile = tls_broker
    result, code = fanin(mqttload, port, 1, COUNT, "--cafile", str(cafile))
    assert result["errors"] == []
    assert result["delivered"] == result["completed"] == COUNT
    assert (result["lost"], result["dup"], result["out_of_order"]) == (0, 0, 0)
    assert code == 0


def test_tls_refuses_a_certificate_another_ca_signed(
    tls_broker: tuple[Broker, int, Path], mqttload: Path, tmp_path: Path
) -> None:
    _, port, _ = tls_broker
    stranger = make_certificates(tmp_path).cafile
    result, code = fanin(mqttload, port, 1, 10, "--cafile", str(stranger))
    assert result["delivered"] == 0
    assert any("certificate verify failed" in error for error in result["errors"])
    assert code == 2


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    """A broker that refuses anonymous clients, and the generator's
    user:password file for its password file."""
    files = make_password_files(tmp_path, users=3)
    config = tmp_path / "flockmq.toml"
    config.write_text(f'password_file = "{files.password_file}"\nallow_anonymous = false\n')
    name, secret = files.users[0]
    broker = Broker(
        tmp_path / "broker",
        extra_args=["--config", str(config)],
        credentials=(name, secret.encode()),
    )
    broker.start()
    yield broker, files.credentials
    broker.stop()


def test_connect_rate_with_passwords_connects_every_client(
    password_broker: tuple[Broker, Path], mqttload: Path
) -> None:
    broker, credentials = password_broker
    result, code = run(
        mqttload,
        broker.port,
        "connect-rate",
        "--connections",
        "300",
        "--processes",
        "2",
        "--connect-concurrency",
        "10",
        "--credentials",
        str(credentials),
    )
    assert (result["connects"], result["failed"], result["errors"]) == (300, 0, [])
    assert result["connects_per_s"] > 0 and result["processes"] == 2
    assert code == 0


def test_a_wrong_password_is_a_failed_connect(
    password_broker: tuple[Broker, Path], mqttload: Path, tmp_path: Path
) -> None:
    broker, credentials = password_broker
    wrong = tmp_path / "wrong"
    name = credentials.read_text().splitlines()[0].partition(":")[0]
    wrong.write_text(f"{name}:not-the-password\n")
    result, code = run(
        mqttload, broker.port, "connect-rate", "--connections", "2", "--credentials", str(wrong)
    )
    assert result["connects"] == 0 and result["failed"] == 2
    assert result["violations"] == ["2 of 2 connects failed"]
    assert code == 1


@pytest.mark.parametrize("qos", [1, 2])
def test_dropped_publish_is_one_loss_and_fails(broker: Broker, mqttload: Path, qos: int) -> None:
    with MqttProxy(broker.host, broker.port, "drop") as proxy:
        result, code = fanin(mqttload, proxy.port, qos, PROXIED_COUNT)
        assert proxy.fault_applied
    assert result["completed"] == result["expected"] == PROXIED_COUNT
    assert (result["lost"], result["dup"]) == (1, 0)
    assert result["delivered"] == PROXIED_COUNT - 1
    assert result["violations"] == [f"1 message(s) lost at QoS {qos}"]
    assert code == 1


def test_duplicate_at_qos1_is_counted_but_allowed(broker: Broker, mqttload: Path) -> None:
    with MqttProxy(broker.host, broker.port, "dup") as proxy:
        result, code = fanin(mqttload, proxy.port, 1, PROXIED_COUNT)
        assert proxy.fault_applied
    assert (result["lost"], result["dup"], result["out_of_order"]) == (0, 1, 0)
    assert result["received"] == PROXIED_COUNT + 1
    assert code == 0  # [MQTT-4.3.2]: at least once


def test_duplicate_at_qos2_fails(broker: Broker, mqttload: Path) -> None:
    with MqttProxy(broker.host, broker.port, "dup") as proxy:
        result, code = fanin(mqttload, proxy.port, 2, PROXIED_COUNT)
        assert proxy.fault_applied
    assert (result["lost"], result["dup"]) == (0, 1)
    assert result["violations"] == ["1 duplicate(s) at QoS 2"]
    assert code == 1


def test_a_scenario_it_does_not_implement_is_refused_before_connecting(mqttload: Path) -> None:
    proc = subprocess.run(
        [str(mqttload), "connections", "--port", "1", "--dry-run"], capture_output=True, text=True
    )
    assert proc.returncode == 64 and "unsupported" in proc.stderr


def test_a_failed_build_gives_no_binary_and_says_why(mqttload: Path, tmp_path: Path) -> None:
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return }\n")
    binary, why = build_native([source], tmp_path / "out" / "broken", install=False)
    assert binary is None and "failed" in why
    assert not (tmp_path / "out" / "broken").exists()
    assert not (tmp_path / "out" / "broken.partial").exists()


def test_bench_runs_a_row_it_cannot_run_with_loadtest_py(mqttload: Path) -> None:
    generator, why = choose("native", ["connections", "--connections", "10"], mqttload)
    assert generator is PYTHON and "unsupported" in why
    generator, why = choose("native", ["fanin", "--qos", "1", "--protocol", "5"], mqttload)
    assert generator is PYTHON and "unsupported" in why
    generator, why = choose("native", ["fanin", "--qos", "1", "--count", "10"], mqttload)
    assert generator.name == "native" and why == ""
    assert generator.command(["fanin"]) == [str(mqttload), "fanin"]
