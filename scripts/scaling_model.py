"""Print the scaling model (scripts/loadgen/scaling.py) from a `make bench`
run's raw file: the measured CPU per message of each flockmq role, and the
throughput each row would reach on 4-32 cores with the best split of
acceptors, workers and routers. A model from measured inputs, not a measurement.

    .venv/bin/python scripts/scaling_model.py [--raw build/bench/bench-runs.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen.scaling import Inputs, flockmq_runs, inputs_of, table

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
