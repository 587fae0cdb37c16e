"""Naming a broker's processes and summing their memory (scripts/broker_memory.py)."""

from __future__ import annotations

from loadgen.broker_memory import Sample, by_role, format_table, label, per_connection, sum_samples


def test_a_child_is_named_by_its_role_and_index() -> None:
    cmd = ["/v/bin/python", "-m", "flockmq.app.child", "acceptor", "3", "--config", "c.json"]
    assert label(cmd) == "acceptor 3"


def test_the_supervisor_and_other_programs() -> None:
    assert label(["/v/bin/python", "/v/bin/flockmq", "serve", "--port", "1"]) == "supervisor"
    assert label(["/usr/sbin/mosquitto", "-c", "m.conf"]) == "mosquitto"
    assert label([]) == "?"


def test_a_forked_child_is_named_by_its_process_name() -> None:
    serve = ["/v/bin/python", "/v/bin/flockmq", "serve", "--spawn", "fork"]
    assert label(serve, "worker-1") == "worker 1"
    assert label(serve, "flockmq") == "supervisor"


def test_a_titled_process_is_named_by_its_title() -> None:
    assert label(["flockmq acceptor 1 [port 1883]", "", ""], "acceptor-1") == "acceptor 1"
    assert label(["flockmq", "auth", "0"]) == "auth 0"
    assert label(["flockmq supervisor [port 1883]", ""], "flockmq") == "supervisor"


def test_totals_over_all_processes_and_per_role() -> None:
    samples = [
        Sample(1, "supervisor", 10, 5, 4),
        Sample(2, "acceptor 0", 20, 8, 6),
        Sample(3, "acceptor 1", 22, 9, 7),
    ]
    total = sum_samples(samples)
    assert (total.rss, total.pss, total.uss) == (52, 22, 17)
    roles = by_role(samples)
    assert roles["acceptor"].rss == 42 and roles["supervisor"].pss == 5
    table = format_table(samples).splitlines()
    assert table[-1].startswith("total") and len(table) == 5


def test_what_each_connection_costs_overall_and_per_role() -> None:
    mib = 2**20
    idle = [
        Sample(1, "supervisor", 10 * mib, 5 * mib, 4 * mib),
        Sample(2, "acceptor 0", mib, mib, mib),
    ]
    held = [
        Sample(1, "supervisor", 10 * mib, 5 * mib, 4 * mib),
        Sample(3, "acceptor 0", 11 * mib, 6 * mib, 6 * mib, 1030),  # restarted: a new pid
    ]
    figures = per_connection(idle, held, 1024)
    assert figures["kib_per_connection"] == {"rss": 10.0, "pss": 5.0, "uss": 5.0}
    assert figures["kib_per_connection_by_role"]["supervisor"]["rss"] == 0.0
    assert figures["kib_per_connection_by_role"]["acceptor"]["pss"] == 5.0
    assert figures["broker_idle_mib"] == {"rss": 11.0, "pss": 6.0, "uss": 5.0}
    assert figures["broker_held_mib"]["rss"] == 21.0
    assert figures["fds_held"] == {"supervisor": 0, "acceptor 0": 1030}


def test_no_figures_without_connections_or_samples() -> None:
    assert per_connection([], [], 10) == {}
    sample = [Sample(1, "supervisor", 1, 1, 1)]
    assert per_connection(sample, sample, 0) == {}
