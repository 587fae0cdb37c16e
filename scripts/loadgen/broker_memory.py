"""Memory of a running broker, per process and summed: RSS, PSS and USS.

RSS counts a page in every process that maps it, so a sum of RSS counts a
page shared by six processes (the interpreter, a library, a page inherited
over fork) six times. PSS splits each shared page over the processes that
share it, so the PSS of a process tree sums to what the tree really costs;
USS is what a process alone holds (freed when it exits). The broker's honest
figure is the summed PSS.

`label` names a process by its command line (`supervisor`, `acceptor 0`,
...); `Sample` and `sum_samples` are plain data, the psutil calls are in
`sample_tree`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import psutil

from flockmq.app.proctitle import role_of


@dataclass(frozen=True, slots=True)
class Sample:
    pid: int
    label: str
    rss: int
    pss: int
    uss: int
    fds: int = 0  # open descriptors (a client connection is one, in an acceptor)


def label(cmdline: list[str], name: str = "") -> str:
    """`acceptor 0` for a child (titled `flockmq acceptor 0 [port 1883]`, or
    named `acceptor-0`, or `python -m flockmq.app.child acceptor 0 ...`
    before it titles itself: `flockmq.app.proctitle.role_of`),
    `supervisor` for `flockmq serve`, else the program's name."""
    found = role_of(cmdline, name)
    if found is not None:
        return found[0] if found[0] == "supervisor" else f"{found[0]} {found[1]}"
    if "serve" in cmdline[:3]:
        return "supervisor"
    return cmdline[0].rsplit("/", 1)[-1] if cmdline else "?"


def sum_samples(samples: list[Sample]) -> Sample:
    """The tree's totals, as one row."""
    return Sample(
        pid=0,
        label="total",
        rss=sum(s.rss for s in samples),
        pss=sum(s.pss for s in samples),
        uss=sum(s.uss for s in samples),
        fds=sum(s.fds for s in samples),
    )


def by_role(samples: list[Sample]) -> dict[str, Sample]:
    """The totals of each role (`acceptor`, `worker`, ...)."""
    roles: dict[str, list[Sample]] = {}
    for s in samples:
        roles.setdefault(s.label.split(" ")[0], []).append(s)
    return {role: sum_samples(group) for role, group in roles.items()}


def sample_tree(root_pid: int) -> list[Sample]:
    """One sample per process of the tree under `root_pid` (itself included);
    a process that exits meanwhile is left out."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    samples = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            mem = proc.memory_full_info()
            name = label(proc.cmdline(), proc.name())
            samples.append(Sample(proc.pid, name, mem.rss, mem.pss, mem.uss, proc.num_fds()))
    return samples


def format_table(samples: list[Sample]) -> str:
    """Rows of MiB per process, then the total."""
    mib = 2**20
    head = f"{'PROCESS':<14}{'PID':>8}{'RSS MiB':>10}{'PSS MiB':>10}{'USS MiB':>10}{'FDS':>8}"
    lines = [head]
    for s in [*samples, sum_samples(samples)]:
        pid = str(s.pid) if s.pid else ""
        mem = f"{s.rss / mib:>10.1f}{s.pss / mib:>10.1f}{s.uss / mib:>10.1f}"
        lines.append(f"{s.label:<14}{pid:>8}{mem}{s.fds:>8}")
    return "\n".join(lines)


def sample_roots(roots: list[psutil.Process]) -> list[Sample]:
    """`sample_tree` of each root (the broker's supervisor, or mosquitto)."""
    return [s for root in roots for s in sample_tree(root.pid)]


def per_connection(before: list[Sample], during: list[Sample], held: int) -> dict[str, Any]:
    """What each held connection costs: the growth of the summed RSS, PSS and
    USS (KiB per connection) from the idle broker (`before`) to the broker
    holding `held` connections (`during`), over all processes and per role;
    and both totals in MiB. Empty without connections or samples."""
    if held <= 0 or not before or not during:
        return {}
    idle, busy = sum_samples(before), sum_samples(during)
    idle_roles, busy_roles = by_role(before), by_role(during)
    return {
        "broker_idle_mib": _mib_row(idle),
        "broker_held_mib": _mib_row(busy),
        "kib_per_connection": _kib_growth(idle, busy, held),
        "fds_held": {s.label: s.fds for s in during},
        "kib_per_connection_by_role": {
            role: _kib_growth(idle_roles[role], busy_roles[role], held)
            for role in sorted(busy_roles)
            if role in idle_roles
        },
    }


def _mib_row(s: Sample) -> dict[str, float]:
    return {k: round(v / 2**20, 1) for k, v in (("rss", s.rss), ("pss", s.pss), ("uss", s.uss))}


def _kib_growth(idle: Sample, busy: Sample, held: int) -> dict[str, float]:
    return {
        "rss": round((busy.rss - idle.rss) / held / 1024, 2),
        "pss": round((busy.pss - idle.pss) / held / 1024, 2),
        "uss": round((busy.uss - idle.uss) / held / 1024, 2),
    }
