"""The titles and names of the broker's processes, and reading them back
(flockmq/app/proctitle.py); tests/e2e/test_proctitle.py sees them in ps."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flockmq.app.proctitle import child_title, role_of, supervisor_title
from flockmq.config import Config


def test_titles_say_the_role_the_index_and_an_acceptors_port() -> None:
    config = Config(port=1884)
    assert supervisor_title(config) == "flockmq supervisor [port 1884]"
    assert child_title("acceptor", 1, config) == "flockmq acceptor 1 [port 1884]"
    assert child_title("worker", 2, config) == "flockmq worker 2"
    assert child_title("auth", 0, config) == "flockmq auth 0"


def test_several_listeners_are_all_named() -> None:
    config = Config(listeners=[{"port": 1883}, {"port": 9001, "protocol": "websockets"}])
    assert supervisor_title(config) == "flockmq supervisor [ports 1883,9001]"


@pytest.mark.parametrize(
    ("cmdline", "name", "found"),
    [
        # titled, as psutil reads it (one argument and padding) or split
        (["flockmq acceptor 0 [port 1883]", "", ""], "acceptor-0", ("acceptor", 0)),
        (["flockmq", "worker", "12"], "", ("worker", 12)),
        (["flockmq supervisor [port 1883]", ""], "flockmq", ("supervisor", 0)),
        # forked, not titled yet: serve's title (or command line), its name
        (["flockmq supervisor [port 1883]", ""], "router-0", ("router", 0)),
        (["/v/bin/python", "/v/bin/flockmq", "serve"], "auth-3", ("auth", 3)),
        # exec'd, not titled yet
        (
            ["/v/bin/python", "-m", "flockmq.app.child", "worker", "1", "--config", "c"],
            "",
            ("worker", 1),
        ),
        # not ours
        (["/usr/sbin/mosquitto", "-c", "m.conf"], "mosquitto", None),
        (["flockmq", "serve"], "flockmq", None),
        (["flockmq", "bogus", "1"], "python3", None),
        ([], "", None),
    ],
)
def test_role_of_reads_titles_names_and_exec_command_lines(
    cmdline: list[str], name: str, found: tuple[str, int] | None
) -> None:
    assert role_of(cmdline, name) == found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and prctl: Linux only")
def test_name_process_titles_and_keeps_or_sets_the_name() -> None:
    script = (
        "from flockmq.app.proctitle import name_process, read_name\n"
        "before = read_name()\n"
        "name_process('flockmq worker 7')\n"
        "assert read_name() == before, (read_name(), before)\n"
        "name_process('flockmq worker 7', 'worker-7')\n"
        "assert read_name() == 'worker-7'\n"
        "print(open('/proc/self/cmdline', 'rb').read().split(b'\\0')[0].decode())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flockmq worker 7"
