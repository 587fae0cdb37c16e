"""`flockmq status` (issue 13) against the real broker, as a user runs it:
a subprocess given the data directory. Every process answers over its
control socket with its pid (the ones psutil sees under the supervisor),
the connections are the clients connected, the table and the advice print,
`--watch` refreshes until Ctrl-C, and a restarted process is counted."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.health import child_pids

from .broker import FLOCKMQ, Broker, MakeBroker
from .clients import Client, wait_for
from .hooks import use_test_hook


def status(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOCKMQ, "status", "--data-dir", str(data_dir), "--interval", "0.3", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def report(broker: Broker) -> dict[str, Any]:
    done = status(broker.data_dir, "--json")
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def processes(answer: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(p["role"], p["index"]): p for p in answer["processes"]}


def test_every_process_answers_with_its_pid_and_the_connections(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with an auth hook: its process answers too, with its hook's figures
    broker = make_broker(*use_test_hook(monkeypatch), acceptors=2, workers=2)
    clients = [Client(broker.port) for _ in range(3)]
    for c in clients:
        c.connect()
    wait_for(lambda: report(broker)["totals"]["connections"] == 3, 30, "3 connections")
    answer = report(broker)
    found = processes(answer)
    expected = child_pids(broker)
    assert {k: p["pid"] for k, p in found.items() if k[0] != "supervisor"} == expected
    assert found[("supervisor", 0)]["pid"] == broker.pid
    assert all(p["answered"] for p in found.values())
    assert all(p["rss_bytes"] > 1_000_000 for p in found.values())
    assert all(0 < p["pss_bytes"] < p["rss_bytes"] for p in found.values())
    # forked from one supervisor, the processes share pages: counted once in PSS
    assert answer["totals"]["pss_bytes"] < answer["totals"]["rss_bytes"]
    assert sum(p["connections"] for k, p in found.items() if k[0] == "acceptor") == 3
    assert answer["totals"]["sessions"] == 3  # clean sessions live on the shards
    hook = found[("auth", 0)]["hook"]
    assert hook["allowed"]["connect"] >= 3 and hook["calls"] >= 3  # the hook let them in
    assert answer["advice"]

    table = status(broker.data_dir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:5] == ["PROCESS", "PID", "CPU%", "RSS", "PSS"]
    for (role, index), pid in expected.items():
        assert any(line.split()[:3] == [role, str(index), str(pid)] for line in lines), role
    assert any(line.startswith("total") for line in lines)
    hooks = lines.index("auth hooks:")
    assert lines[hooks + 1].startswith("  auth 0: ")
    advice = lines.index("advice:")
    assert lines[advice + 1].startswith("  - ")
    print(table.stdout)  # what the README shows
    for c in clients:
        c.disconnect()


def test_watch_refreshes_until_interrupted(make_broker: MakeBroker) -> None:
    broker = make_broker(acceptors=1, workers=1)
    watch = ["--watch", "--json", "--interval", "0.2"]
    proc = subprocess.Popen(
        [FLOCKMQ, "status", "--data-dir", str(broker.data_dir), *watch],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        reports = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert len({r["time"] for r in reports}) == 3  # three samples, not one
        proc.send_signal(signal.SIGINT)
        # read on until it exits: a --watch writing into a full pipe would
        # block in write() and never see its exit
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            # what it said (an "Exception ignored in ... KeyboardInterrupt"
            # means a finalizer swallowed the Ctrl-C, and the loop went on)
            raise AssertionError(f"--watch still ran 10 s after SIGINT; stderr:\n{err}") from None
        assert proc.returncode == 0, err
    finally:
        proc.kill()
        proc.wait()


def test_a_restarted_worker_is_counted_and_advised_on(make_broker: MakeBroker) -> None:
    broker = make_broker(acceptors=1, workers=2)
    old = broker.kill("worker", 1)
    new = broker.wait_restarted("worker", 1, old)

    def restarted() -> bool:
        worker = processes(report(broker))[("worker", 1)]
        return bool(worker["answered"] and worker["pid"] == new and worker["restarts"] == 1)

    wait_for(restarted, 30, "worker 1 answering from its new pid")
    assert "worker 1 restarted 1 time: the log says why" in report(broker)["advice"]


def test_no_broker_is_said_so(tmp_path: Path) -> None:
    done = status(tmp_path)
    assert done.returncode == 1
    assert "no broker is running on" in done.stderr
