"""`make bench`'s cluster row (issue 14), sans-IO: whether it runs, why it
is skipped, and the records it leaves in the raw file. The measuring is
scripts/bench_cluster.py's (network namespaces of this machine, root).

The row is pairs and fan-out through clusters of 1, 2 and 3 hosts that are
network namespaces of THIS machine: the hosts share its cores, so the row
measures the overhead of a hop between hosts, not scaling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NAME = "cluster"
HOSTS = (1, 2, 3)
WHAT = (
    "cluster row (scripts/bench_cluster.py): pairs and fan-out through 1, 2 and 3"
    " hosts that are network namespaces of this machine, publishers on the first"
    " host and subscribers on the last. The hosts share the same cores: this"
    " measures the overhead of a hop between hosts, not scaling."
)


@dataclass(frozen=True, slots=True)
class Plan:
    run: bool
    skipped: str | None = None  # why a wanted row does not run; None when it runs or is not wanted


def plan(wanted: Iterable[str], unavailable: str | None) -> Plan:
    """`wanted`: the --only names (empty: the default set); `unavailable`:
    why namespaces cannot be made here (tests/cluster/netns.py unavailable()),
    or None. The row is in the default set; where it cannot run it is
    skipped with the reason, never silently left out."""
    names = set(wanted)
    if names and NAME not in names:
        return Plan(run=False)
    if unavailable is not None:
        return Plan(run=False, skipped=f"{NAME} row skipped: {unavailable}")
    return Plan(run=True)


def records(results: Mapping[tuple[str, int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """bench_cluster's results as the raw file's "cluster" list, one record
    per run: {"row", "hosts", "result"}."""
    return [
        {"row": row, "hosts": hosts, "run": i, "result": result}
        for (row, hosts), runs in sorted(results.items())
        for i, result in enumerate(runs)
    ]


def rates(raw_cluster: Iterable[Mapping[str, Any]], row: str, hosts: int) -> list[float]:
    """The deliveries/s of one row's runs on `hosts` hosts, from the raw
    file's "cluster" list (failed runs left out)."""
    out = []
    for record in raw_cluster:
        result = record.get("result") or {}
        value = result.get("deliveries_per_s")
        if record.get("row") == row and record.get("hosts") == hosts and value:
            out.append(float(value))
    return out
