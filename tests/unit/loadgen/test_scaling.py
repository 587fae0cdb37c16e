"""The scaling model (scripts/loadgen/scaling.py): measured CPU per message
by process in, the throughput of the best acceptors/workers split out."""

from __future__ import annotations

from typing import Any

import pytest
import scaling_model
from loadgen.scaling import Inputs, best_split, flockmq_runs, inputs_of, rate, single_part, table


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
