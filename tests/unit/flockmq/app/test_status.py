"""flockmq/app/status.py: `flockmq status`'s figures, advice and table from
snapshots, without a broker (figures in, advice out)."""

from __future__ import annotations

import json
from typing import Any

from flockmq.app.status import Row, Sample, advise, build_report, render_table


def row(role: str, index: int = 0, answered: bool = True, **figures: Any) -> Row:
    """A report row as process_row makes it, idle unless told otherwise."""
    out: Row = {"role": role, "index": index, "pid": 100 + index, "restarts": 0}
    out["answered"] = answered
    if answered:
        out.update(
            cpu_percent=5.0,
            rss_bytes=30_000_000,
            connections=0,
            sessions=0,
            subscriptions=0,
            messages_in_per_s=0.0,
            messages_out_per_s=0.0,
            queued_bytes=0,
            pipes={},
            pipe_limit_bytes=4 * 1024 * 1024,
        )
    out.update(figures)
    return out


def broker(
    acceptor_cpu: float = 5.0, worker_cpu: float = 5.0, acceptors: int = 2, workers: int = 2
) -> list[Row]:
    return [
        row("supervisor"),
        row("router"),
        *(row("worker", i, cpu_percent=worker_cpu) for i in range(workers)),
        *(row("acceptor", i, cpu_percent=acceptor_cpu) for i in range(acceptors)),
    ]


def test_an_idle_broker_gets_no_advice_with_the_figures_checked() -> None:
    [advice] = advise(broker(), cpu_count=4)
    assert advice.startswith("no advice: every process answered, the busiest at 5 % CPU")
    assert "(4 cores)" in advice


def test_hot_acceptors_and_cool_workers_move_a_worker_to_an_acceptor() -> None:
    advice = advise(broker(acceptor_cpu=95.0, worker_cpu=20.0, workers=3), cpu_count=4)
    assert advice == [
        "acceptors at 95 % CPU, workers at 20 %: move one worker to an acceptor "
        "(--acceptors 3 --workers 2)"
    ]


def test_hot_workers_and_cool_acceptors_move_an_acceptor_to_a_worker() -> None:
    advice = advise(broker(acceptor_cpu=10.0, worker_cpu=90.0), cpu_count=4)
    assert advice == [
        "acceptors at 10 % CPU, workers at 90 %: move one acceptor to a worker "
        "(--acceptors 1 --workers 3)"
    ]


def test_a_single_worker_is_not_moved_away() -> None:
    [advice] = advise(broker(acceptor_cpu=95.0, worker_cpu=20.0, workers=1), cpu_count=2)
    assert advice.startswith("no advice")


def test_a_saturated_router_is_named_as_the_limit() -> None:
    rows = broker()
    rows[1]["cpu_percent"] = 97.0
    [advice] = advise(rows, cpu_count=4)
    assert advice.startswith("the router at 97 % CPU is the limit")


def test_one_shard_holding_most_sessions_is_reported_with_its_share() -> None:
    rows = broker(workers=2)
    rows[2]["sessions"], rows[3]["sessions"] = 700, 300
    assert advise(rows, cpu_count=4) == [
        "one session shard (worker 0) holds 70 % of sessions (700 of 1000, fair share 50 %)"
    ]
    rows[2]["sessions"], rows[3]["sessions"] = 550, 450  # uneven, but not by much
    assert advise(rows, cpu_count=4)[0].startswith("no advice")
    rows[2]["sessions"], rows[3]["sessions"] = 10, 0  # too few to matter
    assert advise(rows, cpu_count=4)[0].startswith("no advice")


def test_connections_piled_on_one_acceptor_are_reported() -> None:
    rows = broker(acceptors=4)
    for r, n in zip(rows[4:], (90, 4, 3, 3), strict=True):
        r["connections"] = n
    [advice] = advise(rows, cpu_count=4)
    assert (
        advice == "one acceptor (acceptor 0) holds 90 % of connections (90 of 100, fair share 25 %)"
    )


def test_a_full_pipe_a_restart_and_a_silent_process_are_each_reported() -> None:
    rows = broker()
    rows[4]["pipes"] = {"router": 3 * 1024 * 1024, "worker-0": 10}
    rows[3]["restarts"] = 2
    rows[5] = row("acceptor", 1, answered=False, pid=4242)
    assert advise(rows, cpu_count=4) == [
        "acceptor 1 (pid 4242) did not answer: it may be busy, starting or stopped (see the log)",
        "worker 1 restarted 2 times: the log says why",
        "acceptor 0's pipe to router holds 3.0 MiB (limit 4.0 MiB): router is not keeping up",
    ]


def snapshot(role: str, index: int, at: float, cpu: float, **figures: Any) -> dict[str, Any]:
    gauges = {k: v for k, v in figures.items() if k != "pipes"}
    return {
        "pid": 10 + index,
        "time": at,
        "cpu_seconds": cpu,
        "rss_bytes": 50 * 1024 * 1024,
        "pss_bytes": 20 * 1024 * 1024,
        "role": role,
        "index": index,
        "counters": {},
        "gauges": gauges,
        "pipes": figures.get("pipes", {}),
        "pipe_bytes": 4 * 1024 * 1024,
        "envelopes_in": 0,
        "envelopes_out": 0,
    }


def samples() -> tuple[Sample, Sample]:
    def take(at: float, cpu: float, published: int) -> Sample:
        acceptor = snapshot(
            "acceptor",
            0,
            at,
            cpu,
            clients_connected=3,
            publishes_received=published,
            publishes_sent=2 * published,
            pipes={"router": {"in_flight": 2048, "backlog": 0}},
        )
        worker = snapshot("worker", 0, at, cpu / 2, sessions=3, subscriptions=5)
        silent = {"role": "acceptor", "index": 1, "pid": 77, "restarts": 1, "snapshot": None}
        return Sample(
            at,
            [
                {"role": "acceptor", "index": 0, "pid": 10, "restarts": 0, "snapshot": acceptor},
                {"role": "worker", "index": 0, "pid": 10, "restarts": 0, "snapshot": worker},
                silent,
            ],
        )

    return take(100.0, 1.0, 1000), take(102.0, 2.0, 3000)


def test_two_samples_give_rates_cpu_and_totals() -> None:
    report = build_report(*samples(), cpu_count=2)
    worker, acceptor, silent = report["processes"]
    assert (worker["role"], acceptor["role"], silent["role"]) == ("worker", "acceptor", "acceptor")
    assert acceptor["cpu_percent"] == 50.0 and worker["cpu_percent"] == 25.0
    assert acceptor["messages_in_per_s"] == 1000.0
    assert acceptor["messages_out_per_s"] == 2000.0
    assert acceptor["queued_bytes"] == 2048 and acceptor["pipes"] == {"router": 2048}
    assert not silent["answered"] and silent["pid"] == 77
    totals = report["totals"]
    assert totals["connections"] == 3 and totals["sessions"] == 3
    assert totals["messages_in_per_s"] == 1000.0 and totals["restarts"] == 1
    assert totals["processes"] == 3 and totals["answered"] == 2
    assert totals["pss_bytes"] == 2 * 20 * 1024 * 1024  # of the two that answered
    json.dumps(report)  # what --json prints


def test_a_restart_between_the_samples_gives_no_rate() -> None:
    before, after = samples()
    after.rows[0]["snapshot"] = {**after.rows[0]["snapshot"], "pid": 999}
    acceptor = build_report(before, after, cpu_count=2)["processes"][1]
    assert acceptor["cpu_percent"] is None and acceptor["messages_in_per_s"] is None


def test_the_table_has_a_row_per_process_totals_and_advice() -> None:
    text = render_table(build_report(*samples(), cpu_count=2))
    lines = text.splitlines()
    assert lines[0].split() == [
        "PROCESS", "PID", "CPU%", "RSS", "PSS", "CONNS", "SESSIONS", "SUBS",
        "IN/s", "OUT/s", "QUEUED", "RESTARTS",
    ]  # fmt: skip
    assert lines[1].split() == [
        "worker", "0", "10", "25.0", "50.0", "MiB", "20.0", "MiB", "0", "3", "5", "0.0", "0.0",
        "0", "B", "0"
    ]  # fmt: skip
    assert lines[2].split()[:5] == ["acceptor", "0", "10", "50.0", "50.0"]
    assert lines[3].split() == ["acceptor", "1", "77", "no", "answer", "-", "-", "-", "-", "-",
                                "-", "-", "-", "1"]  # fmt: skip
    assert lines[5].split()[:6] == ["total", "75.0", "100.0", "MiB", "40.0", "MiB"]
    assert "advice:" in lines
    assert lines[-1] == "  - acceptor 1 restarted 1 time: the log says why"
    # the columns line up: every row as wide as the header's columns need
    assert len({line.index("RESTARTS") for line in lines[:1]}) == 1


def test_a_standby_worker_says_so_in_the_row_and_the_table() -> None:
    """PostgreSQL store: a worker's `shard_standby` gauge (workers/ownership.py)."""
    from flockmq.app.status import process_row

    def sampled(standby: int | None) -> Row:
        gauges = {} if standby is None else {"shard_standby": standby}
        snapshot = {"pid": 7, "time": 1.0, "cpu_seconds": 0.0, "gauges": gauges, "counters": {}}
        return {"role": "worker", "index": 1, "pid": 7, "snapshot": snapshot}

    assert process_row(None, sampled(1))["standby"] is True
    assert process_row(None, sampled(0))["standby"] is False
    assert "standby" not in process_row(None, sampled(None))  # SQLite: no such state
    table = render_table(
        build_report(Sample(0.0, []), Sample(1.0, [sampled(1), sampled(None)]), cpu_count=2)
    )
    assert "worker 1 (standby)" in table
