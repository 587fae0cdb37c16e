"""The bundled load tester (`scripts/loadtest.py`) counts what really happened.

The real tester runs as a subprocess against the real broker through a small
MQTT-aware TCP proxy (mqtt_proxy.py). The proxy forwards both ways and can,
once, toward the subscriber, drop a PUBLISH (answering the broker's QoS flow
itself, so the broker sees it acknowledged) or deliver a PUBLISH twice (the
copy under a packet id the broker does not use, whose acknowledgements the
proxy swallows). The tester must then report exactly lost=1 or dup=1 and exit
non-zero where a QoS guarantee was broken; through a faithful proxy it must
report 0/0 and exit 0. Nothing here depends on timing beyond generous bounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .broker import Broker
from .mqtt_proxy import MqttProxy

LOADTEST = Path(__file__).resolve().parents[2] / "scripts" / "loadtest.py"
COUNT = 200


def run_loadtest(port: int, qos: int, *extra: str) -> tuple[dict[str, Any], int]:
    cmd = [
        sys.executable,
        str(LOADTEST),
        "fanin",
        "--port",
        str(port),
        "--qos",
        str(qos),
        "--publishers",
        "2",
        "--count",
        str(COUNT),
        "--processes",
        "2",
        # the quiet time after which a drop test's missing message counts
        # as lost (each waits it out once); 3 s as test_loadtest_native
        "--drain-timeout",
        "3",
        "--duration-limit",
        "90",
        "--json",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{proc.stderr}"
    return json.loads(lines[-1]), proc.returncode


def assert_complete(result: dict[str, Any]) -> None:
    assert result["errors"] == []
    assert result["timed_out"] is False
    assert result["sent"] == COUNT
    assert result["completed"] == COUNT
    assert result["expected"] == COUNT


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_faithful_proxy_reports_no_loss_or_duplicate(broker: Broker, qos: int) -> None:
    with MqttProxy(broker.host, broker.port, None) as proxy:
        result, code = run_loadtest(proxy.port, qos)
    assert_complete(result)
    assert (result["lost"], result["dup"], result["out_of_order"]) == (0, 0, 0)
    assert result["delivered"] == COUNT
    assert result["violations"] == []
    assert code == 0


@pytest.mark.parametrize("qos", [1, 2])
def test_dropped_publish_is_one_loss_and_fails(broker: Broker, qos: int) -> None:
    with MqttProxy(broker.host, broker.port, "drop") as proxy:
        result, code = run_loadtest(proxy.port, qos)
        assert proxy.fault_applied
    assert_complete(result)
    assert result["lost"] == 1
    assert result["dup"] == 0
    assert result["delivered"] == COUNT - 1
    assert code == 1


def test_dropped_publish_at_qos0_is_counted_but_allowed(broker: Broker) -> None:
    with MqttProxy(broker.host, broker.port, "drop") as proxy:
        result, code = run_loadtest(proxy.port, 0)
        assert proxy.fault_applied
    assert result["lost"] == 1
    assert code == 0


def test_duplicate_at_qos1_is_counted_but_allowed(broker: Broker) -> None:
    with MqttProxy(broker.host, broker.port, "dup") as proxy:
        result, code = run_loadtest(proxy.port, 1)
        assert proxy.fault_applied
    assert_complete(result)
    assert (result["lost"], result["dup"], result["out_of_order"]) == (0, 1, 0)
    assert result["received"] == COUNT + 1
    assert code == 0  # [MQTT-4.3.2]: at least once


def test_duplicate_at_qos2_fails(broker: Broker) -> None:
    with MqttProxy(broker.host, broker.port, "dup") as proxy:
        result, code = run_loadtest(proxy.port, 2, "--protocol", "5")
        assert proxy.fault_applied
    assert_complete(result)
    assert (result["lost"], result["dup"]) == (0, 1)
    assert result["violations"] == ["1 duplicate(s) at QoS 2"]
    assert code == 1
