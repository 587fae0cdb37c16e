"""Print the scaling model (scripts/loadgen/scaling.py) from a `make bench`
run's raw file: the measured CPU per message of each flockmq role, and the
throughput each row would reach on 4-32 cores with the best split of
acceptors, workers and routers; and, from make bench's cluster row (root:
network namespaces), the cost of a hop between hosts and what n hosts of C
cores each would give. A model from measured inputs, not a measurement.

    .venv/bin/python scripts/scaling_model.py [--raw build/bench/bench-runs.json]
                                              [--cluster-raw FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import cluster_rows
from loadgen.scaling import (
    CLUSTER_ROWS,
    Hop,
    Inputs,
    cluster_table,
    flockmq_runs,
    hop_of,
    inputs_of,
    table,
)

# Rows whose messages all go to one subscriber: its acceptor (and, above
# QoS 0, its worker) carries every delivery.
SINGLE_SUBSCRIBER_PREFIX = "fanin"
# Paced rows: their CPU per message is mostly the idle process's own ticks,
# not what a message costs under load.
PACED = {"latency"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--raw", default="build/bench/bench-runs.json", help="make bench's raw file"
    )
    parser.add_argument(
        "--cluster-raw",
        default=None,
        help="a raw file with the cluster row (make bench ARGS='--only cluster'); default --raw",
    )
    args = parser.parse_args(argv)
    raw = json.loads(Path(args.raw).read_text())
    rows = sorted({str(r["row"]) for r in raw.get("runs", [])})
    all_inputs: list[Inputs] = []
    for row in rows:
        runs = flockmq_runs(raw, row)
        if runs and row not in PACED:
            single = row.startswith(SINGLE_SUBSCRIBER_PREFIX)
            all_inputs.append(inputs_of(row, runs, single))
    if not all_inputs:
        print(f"{args.raw}: no flockmq run with per-process CPU (run make bench)", file=sys.stderr)
        return 1
    print(f"From {args.raw} (bench started {raw.get('started', '?')}), µs of CPU per message:\n")
    print(table(all_inputs))
    print(
        "\nrate(a, w, r) = min(r/R, a/A, w/W, 1/Sa, 1/Sw), one core per process"
        " (--routers r included); a model from measured inputs, not a measurement."
    )
    print_cluster(
        args.cluster_raw or args.raw, raw if args.cluster_raw is None else None, all_inputs
    )
    return 0


def print_cluster(path: str, raw: dict[str, Any] | None, all_inputs: list[Inputs]) -> None:
    """The cluster case, when `path` has make bench's cluster row."""
    if raw is None:
        raw = json.loads(Path(path).read_text())
    records = (raw.get("cluster") or {}).get("runs") or []
    cores = int((raw.get("host") or {}).get("cpus") or 2)
    by_row = {i.row: i for i in all_inputs}
    pairs: list[tuple[Inputs, Hop]] = []
    for cluster_row, model_row in CLUSTER_ROWS.items():
        rates = {n: cluster_rows.rates(records, cluster_row, n) for n in cluster_rows.HOSTS}
        hop = hop_of(cluster_row, rates, cores)
        if hop is not None and model_row in by_row:
            pairs.append((by_row[model_row], hop))
    if not pairs:
        print(f"\n{path}: no cluster row (make bench as root, or --only cluster); no cluster case")
        return
    print(
        f"\nThe cluster case, hops from {path} ({cores} cores shared by every host:"
        " a hop's overhead, not scaling), µs of the machine's CPU per delivery,"
        " then deliveries/s of n hosts x C cores (hop as measured / at its upper bound):\n"
    )
    print(cluster_table(pairs))
    print(
        "\ncluster(n, C) = n * rate(best split of C) * T / (T + (n-1)/n * H), T = R + A + W;"
        " (n-1)/n of the deliveries cross hosts (uniform placement)."
    )


if __name__ == "__main__":
    sys.exit(main())
