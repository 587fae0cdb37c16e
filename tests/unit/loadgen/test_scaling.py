"""The scaling model (scripts/loadgen/scaling.py): measured CPU per message
by process in, the throughput of the best acceptors/workers split out."""

from __future__ import annotations

import json
from typing import Any

import pytest
import scaling_model
from loadgen.scaling import (
    Hop,
    Inputs,
    best_split,
    cluster_rate,
    cluster_table,
    flockmq_runs,
    hop_of,
    inputs_of,
    rate,
    single_part,
    spread,
    table,
)


def test_inputs_sum_each_role_and_find_the_one_subscribers_part() -> None:
    runs = [
        {"router/0": 4.0, "acceptor/0": 9.0, "acceptor/1": 3.0, "worker/0": 0.1, "worker/1": 0.1},
        {"router/0": 6.0, "acceptor/0": 11.0, "acceptor/1": 5.0, "worker/0": 0.1, "worker/1": 0.1},
    ]
    fanin = inputs_of("fanin-q0", runs, single_subscriber=True)
    assert (fanin.router, fanin.acceptors) == (5.0, 14.0)
    assert fanin.workers == pytest.approx(0.2)
    assert fanin.single_acceptor == 6.0  # the busiest acceptor above the other
    assert fanin.runs == 2
    spread = inputs_of("pairs-q1", runs, single_subscriber=False)
    assert spread.single_acceptor == spread.single_worker == 0.0


def test_single_part_needs_two_processes() -> None:
    assert single_part([5.0]) == 0.0
    assert single_part([2.0, 8.0, 2.0]) == 6.0
    assert single_part([3.0, 3.0]) == 0.0


def test_one_router_caps_every_split_and_more_routers_lift_it() -> None:
    inputs = Inputs("r", router=5.0, acceptors=10.0, workers=2.0)
    value, bound = rate(inputs, 1, 1)
    assert bound == "acceptors" and value == pytest.approx(100_000.0)
    value, bound = rate(inputs, 8, 8)
    assert bound == "router" and value == pytest.approx(200_000.0)
    value, bound = rate(inputs, 8, 8, routers=2)
    assert bound == "router" and value == pytest.approx(400_000.0)
    # 4 cores: one router's cap is reached with 2 acceptors (2 + 1 + 1)
    four = best_split(inputs, 4)
    assert (four.acceptors, four.workers, four.routers, four.bound) == (2, 1, 1, "router")
    # 32 cores: routers are added as acceptors are, in the ratio of their costs
    p = best_split(inputs, 32)
    assert p.acceptors + p.workers + p.routers <= 32 and p.routers > 1
    assert p.rate == pytest.approx(min(p.routers / 5.0, p.acceptors / 10.0, p.workers / 2.0) * 1e6)
    assert p.rate > four.rate * 5


def test_more_cores_go_to_the_role_that_runs_out_first() -> None:
    inputs = Inputs("r", router=0.5, acceptors=12.0, workers=6.0)
    p = best_split(inputs, 8)
    assert p.acceptors + p.workers + p.routers <= 8 and p.routers == 1
    assert p.acceptors == 2 * p.workers or p.acceptors == 2 * p.workers + 1
    assert best_split(inputs, 16).rate > p.rate


def test_one_subscriber_caps_a_fan_in() -> None:
    inputs = Inputs("fanin", router=1.0, acceptors=4.0, workers=0.0, single_acceptor=2.0)
    p = best_split(inputs, 16)
    assert p.bound == "one subscriber's acceptor" and p.rate == pytest.approx(500_000.0)


def raw_file() -> dict[str, Any]:
    cost = {"router/0": 2.0, "acceptor/0": 8.0, "acceptor/1": 4.0, "worker/0": 1.0}
    return {
        "started": "2026-12-02T18:00:00",
        "runs": [
            {"row": "fanin-q0", "target": "flockmq", "result": {"process_cpu_us_per_msg": cost}},
            {"row": "fanin-q0", "target": "mosquitto", "result": {"broker_cpu_us_per_msg": 5}},
            {"row": "fanin-q0", "target": "flockmq", "result": None},
        ],
    }


def test_the_runs_of_a_raw_file_and_the_printed_table(tmp_path: Any, capsys: Any) -> None:
    raw = raw_file()
    assert flockmq_runs(raw, "fanin-q0") == [raw["runs"][0]["result"]["process_cpu_us_per_msg"]]
    assert flockmq_runs(raw, "pairs-q1") == []
    path = tmp_path / "bench.json"
    path.write_text(__import__("json").dumps(raw))
    assert scaling_model.main(["--raw", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| fanin-q0 | 2.0 | 12.0 | 1.0 | 4.0 / 0.0 | 1 |" in out
    assert "32 cores" in out and "one subscriber's acceptor" in out
    assert table([inputs_of("x", [raw["runs"][0]["result"]["process_cpu_us_per_msg"]], True)])


def test_the_hop_is_the_extra_machine_time_per_delivery_against_the_noise() -> None:
    # 2 cores: 20,000/s is 100 µs of the machine per delivery, 10,000/s 200
    hop = hop_of("pairs-q1", {1: [20_000.0, 20_000.0], 2: [10_000.0], 3: [16_000.0]}, 2)
    assert hop is not None
    assert (hop.base, hop.crossed) == (100.0, {2: 200.0, 3: 125.0})
    assert hop.extra == 100.0 and hop.noise == 0.0  # the larger of 2 and 3 hosts; no spread
    assert not hop.within_noise and hop.used == hop.upper == 100.0


def test_a_hop_within_the_noise_is_used_as_measured_with_its_upper_bound() -> None:
    hop = hop_of("fanout-q0", {1: [20_000.0]}, 2)
    assert hop is None  # nothing crossed
    # one run: NOISE (50 %) of the 1-host cost is the band
    hop = hop_of("fanout-q0", {1: [20_000.0], 2: [19_000.0]}, 2)
    assert hop is not None and hop.noise == pytest.approx(50.0)
    assert hop.within_noise and hop.used == pytest.approx(5.26, abs=0.01)
    assert hop.upper == pytest.approx(hop.used + 50.0)
    # faster with more hosts: the hop is not seen, the model uses 0
    faster = hop_of("fanout-q0", {1: [10_000.0, 12_000.0], 3: [20_000.0]}, 2)
    assert faster is not None and faster.extra < 0 and faster.used == 0.0
    assert spread([10_000.0, 12_000.0]) == pytest.approx(2_000.0 / 11_000.0)


def test_n_hosts_pay_the_hop_on_the_deliveries_that_cross() -> None:
    inputs = Inputs("pairs-q1", router=0.5, acceptors=12.0, workers=6.0)  # T = 18.5
    one = best_split(inputs, 8).rate
    assert cluster_rate(inputs, 100.0, 1, 8) == pytest.approx(one)  # nothing crosses
    assert cluster_rate(inputs, 0.0, 4, 8) == pytest.approx(4 * one)  # a free hop: n times
    # 2 hosts: half the deliveries pay 18.5 µs more: 2 * one * 18.5 / (18.5 + 9.25)
    assert cluster_rate(inputs, 18.5, 2, 8) == pytest.approx(2 * one * 2 / 3)
    assert cluster_rate(inputs, 18.5, 8, 8) < 8 * one


def test_the_cluster_case_printed_from_the_raw_files(tmp_path: Any, capsys: Any) -> None:
    raw = raw_file()
    raw["runs"].append(
        {
            "row": "pairs-q1",
            "target": "flockmq",
            "result": {"process_cpu_us_per_msg": {"router/0": 2.0, "acceptor/0": 8.0}},
        }
    )
    cluster = {
        "host": {"cpus": 2},
        "cluster": {
            "runs": [
                {"row": "pairs-q1", "hosts": 1, "result": {"deliveries_per_s": 20_000}},
                {"row": "pairs-q1", "hosts": 2, "result": {"deliveries_per_s": 10_000}},
            ]
        },
    }
    bench_path, cluster_path = tmp_path / "bench.json", tmp_path / "cluster.json"
    bench_path.write_text(json.dumps(raw))
    cluster_path.write_text(json.dumps(cluster))
    args = ["--raw", str(bench_path), "--cluster-raw", str(cluster_path)]
    assert scaling_model.main(args) == 0
    out = capsys.readouterr().out
    assert "| pairs-q1 | 100.0 | 200.0 | +100.0 | 50.0 | 100.0 |" in out
    assert "8 x 16 cores" in out and "not scaling" in out
    assert scaling_model.main(["--raw", str(bench_path)]) == 0
    assert "no cluster row" in capsys.readouterr().out
    assert cluster_table([(inputs_of("x", [{"router/0": 1.0}], False), hop_of_or_fail())])


def hop_of_or_fail() -> Hop:
    hop = hop_of("x", {1: [1_000.0], 3: [900.0]}, 2)
    assert hop is not None
    return hop
