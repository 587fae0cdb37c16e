"""What `ps aux` (and `top`, `htop`, `pgrep -f`) shows for each process of a
broker started as a user starts it, with either `--spawn`: the supervisor
titled `flockmq supervisor [port N]`, each child `flockmq ROLE INDEX` (an
acceptor adds `[port N]`) and named ROLE-INDEX (`ps -o comm`), the auth
processes of an `--auth-hook` among them; a child restarted after kill -9
is titled again."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from .broker import Broker, MakeBroker
from .clients import wait_for
from .hooks import use_test_hook
from .load import WAIT
from .test_supervisor import ROLES

CHILDREN = [*ROLES, ("auth", 0)]


def title(proc: psutil.Process) -> str:
    """The command line as `ps aux` shows it (words joined by one space)."""
    return " ".join(" ".join(proc.cmdline()).split())


def expected_title(role: str, index: int, port: int) -> str:
    return (
        f"flockmq {role} {index} [port {port}]" if role == "acceptor" else f"flockmq {role} {index}"
    )


def assert_titled(broker: Broker) -> None:
    supervisor = psutil.Process(broker.pid)
    assert title(supervisor) == f"flockmq supervisor [port {broker.port}]"
    assert supervisor.name() == "flockmq"  # the name it had, kept
    children = {child.pid: child for child in broker.children()}
    assert {title(child) for child in children.values()} == {
        expected_title(role, index, broker.port) for role, index in CHILDREN
    }
    for role, index in CHILDREN:
        child = children[broker.pid_of(role, index)]
        assert title(child) == expected_title(role, index, broker.port)
        assert child.name() == f"{role}-{index}"


@pytest.mark.parametrize("spawn", ["fork", "exec"])
def test_every_process_is_titled_by_its_role_and_index(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch, spawn: str
) -> None:
    broker = make_broker("--spawn", spawn, *use_test_hook(monkeypatch))
    assert_titled(broker)
    found = subprocess.run(
        # -P: this broker's children only (another broker may run on the machine)
        ["pgrep", "-P", str(broker.pid), "-f", "^flockmq auth 0$"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    assert found == [str(broker.pid_of("auth", 0))]

    old = broker.kill("worker", 1)
    new = psutil.Process(broker.wait_restarted("worker", 1, old))
    # found by its exec command line or its name, until it titles itself
    wait_for(lambda: title(new) == "flockmq worker 1", WAIT, "the new worker's title")
    assert_titled(broker)
