"""`flockmq serve --spawn fork` (the default): children forked from the
supervisor, named ROLE-INDEX, that serve, restart after SIGKILL, stop with a
SIGTERM of the supervisor, reload the ACL on SIGHUP, and stop when the
supervisor itself is killed; and `--spawn exec`: new interpreters, titled
and named the same way (tests/e2e/test_proctitle.py)."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil

from .broker import MakeBroker
from .clients import Client, unique, wait_for
from .load import WAIT
from .test_supervisor import ROLES, connect_retrying, roundtrip

STOP_WAIT = 15.0


def test_forked_children_serve_restart_and_stop(make_broker: MakeBroker) -> None:
    broker = make_broker("--spawn", "fork")
    names = {child.name() for child in broker.children()}
    assert names == {f"{role}-{index}" for role, index in ROLES}
    topic = unique("fork")
    sub = Client(broker.port)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = Client(broker.port)
    pub.connect()
    roundtrip(sub, pub, topic, b"forked")

    old = broker.kill("router", 0)
    broker.wait_restarted("router", 0, old)
    sub2 = connect_retrying(broker.port, unique("again"))
    sub2.subscribe(topic + "/2", 1)
    pub2 = connect_retrying(broker.port, unique("pub"))
    roundtrip(sub2, pub2, topic + "/2", b"after a restart")
    for client in (sub, pub, sub2, pub2):
        client.drop()

    children = broker.children()
    assert broker.stop() == 0
    _, alive = psutil.wait_procs(children, timeout=STOP_WAIT)
    assert alive == []
    assert "Traceback" not in broker.log(), broker.log()


def test_forked_children_stop_when_the_supervisor_is_killed(make_broker: MakeBroker) -> None:
    broker = make_broker("--spawn", "fork")
    children = broker.kill_supervisor()
    assert len(children) == len(ROLES)
    _, alive = psutil.wait_procs(children, timeout=STOP_WAIT)
    assert alive == []


def test_forked_acceptors_reload_on_sighup(make_broker: MakeBroker, tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n")
    broker = make_broker("--spawn", "fork", "--acl-file", str(acl))
    wait_for(lambda: broker.log().count("listening on") >= 2, WAIT, "both acceptors")
    pids = {child.pid for child in broker.children()}
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: broker.log().count("SIGHUP: ACL reloaded") >= 2, WAIT, "both to reload")
    assert {child.pid for child in broker.children()} == pids


def test_exec_children_are_new_interpreters_named_by_role(make_broker: MakeBroker) -> None:
    broker = make_broker("--spawn", "exec")
    for role, index in ROLES:
        child = psutil.Process(broker.pid_of(role, index))
        assert child.name() == f"{role}-{index}"
        assert " ".join(child.cmdline()).split()[:3] == ["flockmq", role, str(index)]
    pub, sub = Client(broker.port), Client(broker.port)
    sub.connect()
    topic = unique("exec")
    sub.subscribe(topic, 1)
    pub.connect()
    roundtrip(sub, pub, topic, b"exec")
    pub.drop()
    sub.drop()
