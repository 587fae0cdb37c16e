"""The cluster rows of issue 14: pairs and fan-out through a flockmq cluster
of 1, 2 and 3 hosts, the hosts being network namespaces of THIS machine.

    sudo .venv/bin/python scripts/bench_cluster.py [--hosts 1,2,3] [--runs 1] [--quick]
        [--insecure]

Every host runs `flockmq serve --cluster FILE --node NAME` (one acceptor,
one router, its share of SHARDS workers), on a PostgreSQL started for the
run (tests/postgres.py, listening on the namespaces' bridge). The load
generator (scripts/loadtest.py, in the root namespace) connects its
publishers to the first host and its subscribers to the last one, so with
2 or 3 hosts every message crosses from one host to another, and a QoS 1/2
message also goes through the worker of its subscriber's session, which is
on any host. With 1 host it is the same cluster code (tcp bus, PostgreSQL
store) on one host: the baseline. The bus and heartbeats are CURVE
(flockmq/curve.py), as a cluster's are by default; `--insecure` runs the
cluster with `insecure = true` instead, to measure what CURVE costs.

What this measures: the cost of the hops between hosts, and of the extra
routers and acceptors, ON THE SAME CORES (this machine has two; the hosts
share them). It is not scaling: a real cluster adds every host's cores.
Veth pairs and a bridge are cheaper than a network: a real hop adds the
network's latency. Needs root (namespaces); prints a table and one JSON
line per run; exits 0 unless a run lost, duplicated or reordered a message.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.cluster.netns import Host, NetnsUnavailable, Network  # noqa: E402
from tests.cluster.netns import unavailable as netns_unavailable  # noqa: E402
from tests.cluster.nodes import ClusterNode, wait_serving, write_cluster_file  # noqa: E402
from tests.postgres import PostgresServer, find_bindir, start_server  # noqa: E402

SHARDS = 6
LOADTEST = ROOT / "scripts" / "loadtest.py"
# (name, loadtest arguments, the --quick ones)
ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "pairs-q1",
        ("pairs", "--pairs", "20", "--qos", "1", "--count", "80000"),
        ("--count", "8000"),
    ),
    (
        "fanout-q0",
        ("fanout", "--subscribers", "50", "--qos", "0", "--count", "10000"),
        ("--count", "1000"),
    ),
    (
        "fanout-q1",
        ("fanout", "--subscribers", "50", "--qos", "1", "--count", "4000"),
        ("--count", "500"),
    ),
    # paced far below saturation: the path's own latency, hops included
    (
        "latency-q0",
        ("latency", "--qos", "0", "--rate", "1000", "--count", "5000"),
        ("--count", "1000"),
    ),
    (
        "latency-q1",
        ("latency", "--qos", "1", "--rate", "1000", "--count", "5000"),
        ("--count", "1000"),
    ),
)


def unavailable() -> str | None:
    """Why the cluster rows cannot run here (no namespaces, no PostgreSQL), or None."""
    why = netns_unavailable()
    if why is not None:
        return why
    bindir = find_bindir()
    if bindir is None or not (Path(bindir) / "initdb").exists():
        return "PostgreSQL is not installed (no initdb): `make test-tools` installs it"
    return None


def start_cluster(
    network: Network, postgres: PostgresServer, count: int, tmp: Path, curve: bool = True
) -> tuple[list[Host], list[ClusterNode], str]:
    hosts = [network.add_host(f"bh{count}n{i}") for i in range(count)]
    database = postgres.create_database()
    dsn = f"host={network.host_address} port={postgres.port} user=postgres dbname={database}"
    cluster_file = write_cluster_file(
        tmp / f"cluster-{count}.toml", tuple(hosts), SHARDS, dsn, (1,) * count, curve=curve
    )
    base = tmp / "flockmq.toml"
    base.write_text('allow_anonymous = true\nlog_level = "warning"\n')
    nodes = [
        ClusterNode(
            tmp / f"{count}-{host.name}",
            command_prefix=host.command(),
            cluster_file=cluster_file,
            node=host.name,
            base_config=base,
        ).launch()
        for host in hosts
    ]
    wait_serving(nodes, SHARDS)
    return hosts, nodes, database


def run_row(nodes: list[ClusterNode], args: tuple[str, ...], limit: float) -> dict[str, Any]:
    first, last = nodes[0], nodes[-1]
    cmd = [
        sys.executable,
        str(LOADTEST),
        *args,
        "--host",
        first.host,
        "--subscriber-host",
        last.host,
        "--port",
        str(first.port),
        "--allow-remote",
        "--broker-pid",
        str(first.pid),
        "--duration-limit",
        str(limit),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit + 60, check=False)
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"error": done.stderr.strip()[-2000:] or "no output", "exit_code": done.returncode}
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_code"] = done.returncode
    return result


Results = dict[tuple[str, int], list[dict[str, Any]]]


def measure(
    counts: list[int], runs: int, quick: bool, insecure: bool = False
) -> tuple[Results, bool]:
    """Every row on clusters of each of `counts` hosts: the results by (row,
    hosts), and True if a run broke a QoS guarantee or failed. Raises
    NetnsUnavailable where namespaces cannot be made (scripts/bench.py calls
    this too)."""
    network = Network.create()
    postgres = start_server()
    results: Results = {}
    broken = False
    options = argparse.Namespace(runs=runs, quick=quick, insecure=insecure)
    try:
        postgres.listen_also(network.host_address, str(network.subnet))
        with tempfile.TemporaryDirectory(prefix="flockmq-bench-cluster-") as tmp:
            for count in counts:
                broken |= bench_hosts(network, postgres, count, Path(tmp), options, results)
    finally:
        postgres.stop()
        network.remove()
    return results, broken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,2,3", help="host counts to run, e.g. 1,3")
    parser.add_argument("--runs", type=int, default=1, help="runs per row and host count")
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument(
        "--insecure", action="store_true", help="no CURVE between the hosts (insecure = true)"
    )
    options = parser.parse_args()
    counts = [int(n) for n in options.hosts.split(",")]
    why = unavailable()
    if why is not None:
        print(f"bench_cluster: cannot run: {why}", file=sys.stderr)
        return 2
    try:
        results, broken = measure(counts, options.runs, options.quick, options.insecure)
    except NetnsUnavailable as exc:
        print(f"bench_cluster: network namespaces are not available: {exc}", file=sys.stderr)
        return 2
    print_table(results, counts)
    return 1 if broken else 0


def bench_hosts(
    network: Network,
    postgres: PostgresServer,
    count: int,
    tmp: Path,
    options: argparse.Namespace,
    results: Results,
) -> bool:
    """Every row on a cluster of `count` hosts; True if a run broke a QoS guarantee."""
    broken = False
    hosts, nodes, database = start_cluster(
        network, postgres, count, tmp, curve=not options.insecure
    )
    try:
        for _ in range(options.runs):
            for name, args, quick in ROWS:
                started = time.monotonic()
                result = run_row(nodes, (*args, *(quick if options.quick else ())), 60.0)
                results.setdefault((name, count), []).append(result)
                print(json.dumps({"row": name, "hosts": count, **result}), flush=True)
                failed = result.get("lost") or result.get("dup") or result.get("out_of_order")
                broken |= bool(failed) or "error" in result
                print(
                    f"# {name}, {count} hosts: {describe(result)}"
                    f" ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for node in nodes:
            node.stop()
        for host in hosts:
            network.remove_host(host.name)
        postgres.drop_database(database)
    return broken


def describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error'][:300]}"
    return (
        f"{result.get('deliveries_per_s', 0):,.0f} deliveries/s, latency p50"
        f" {result.get('latency_p50_us', 0):,.0f} µs p99 {result.get('latency_p99_us', 0):,.0f} µs,"
        f" lost {result.get('lost')} dup {result.get('dup')} ooo {result.get('out_of_order')}"
    )


def print_table(results: Results, counts: list[int]) -> None:
    print("\n| row | " + " | ".join(f"{n} host{'s' if n > 1 else ''}" for n in counts) + " |")
    print("| --- |" + " --- |" * len(counts))
    for name, _args, _quick in ROWS:
        # throughput rows: deliveries/s; latency rows: p50 / p99 in µs (medians of the runs)
        keys = ["latency_p50_us", "latency_p99_us"] if name.startswith("latency") else []
        cells = []
        for n in counts:
            runs = [r for r in results.get((name, n), []) if "deliveries_per_s" in r]
            if not runs:
                cells.append("-")
            elif keys:
                p50, p99 = (statistics.median(r[k] for r in runs) for k in keys)
                cells.append(f"p50 {p50:,.0f} µs, p99 {p99:,.0f} µs")
            else:
                cells.append(f"{statistics.median(r['deliveries_per_s'] for r in runs):,.0f}/s")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
