"""A model, from measured inputs, of what flockmq would do with more cores
(issue 12, "beyond this machine"). Not a measurement: this machine has two.

Inputs, per bench row, from `make bench`'s flockmq runs (median over runs):
each broker process's CPU per delivered message (psutil, user + system),
by role. From them:

- R: the routers' µs per message. One router caps every row at 1/R
  whatever the core count; `--routers r` spreads the publishes over r
  routers by publisher (acceptor i -> router i % r), so r routers carry
  r/R. (Each subscription change goes to every router, a cost per change,
  not per message: not in the model.)
- A, W: the acceptors' and the workers' µs per message, summed over the
  processes of the role. Their work spreads over the processes of the role
  (clients over acceptors by the kernel, sessions over workers by hash), so
  a acceptors carry a/A messages per µs.
- Sa, Sw: the part of one process's work that cannot spread, in rows with a
  single subscriber (fan-in): its acceptor writes every delivery and, for
  QoS 1/2, its worker handles every acknowledgement. Estimated as the
  busiest process of the role minus the mean of the others (the publishers
  are spread evenly, so the difference is the subscriber's own part); 0
  in rows without a single subscriber.

Throughput with `a` acceptors, `w` workers and `r` routers, one core per
process (a + w + r <= cores; the load generator is not on these cores):

    rate(a, w, r) = min(r/R, a/A, w/W, 1/Sa, 1/Sw)     (messages per µs)

and the best split for a core count is the (a, w, r) with the highest rate
(ties: the fewest routers, then acceptors, then workers). R measured with one router
assumes the work per publish does not grow with r. Costs per message measured on 2 busy cores
include the time the processes spend waiting for each other's time slices
and the generator's share of the caches, so the per-message inputs are
pessimistic; the model ignores the kernel's and ZeroMQ's own limits, so its
rates are optimistic. It is a model: it says which role runs out first.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CORES = (4, 8, 16, 32)
ROLES = ("router", "acceptor", "worker")


@dataclass(frozen=True, slots=True)
class Inputs:
    """One row's measured costs, µs of CPU per delivered message."""

    row: str
    router: float
    acceptors: float
    workers: float
    single_acceptor: float = 0.0  # Sa
    single_worker: float = 0.0  # Sw
    runs: int = 1

    @property
    def total(self) -> float:
        return self.router + self.acceptors + self.workers


@dataclass(frozen=True, slots=True)
class Prediction:
    cores: int
    acceptors: int
    workers: int
    rate: float  # messages per second
    bound: str  # what caps it: "router", "acceptors", "workers", "one subscriber's ..."
    routers: int = 1


def single_part(costs: Sequence[float]) -> float:
    """The busiest process's cost above the mean of the others (0 for one
    process: nothing to compare it with)."""
    if len(costs) < 2:
        return 0.0
    ordered = sorted(costs, reverse=True)
    return max(0.0, ordered[0] - statistics.fmean(ordered[1:]))


def inputs_of(row: str, runs: Iterable[dict[str, float]], single_subscriber: bool) -> Inputs:
    """`runs`: per run, {"acceptor/0": µs per message, "router/0": ...}.
    Each process's median over the runs, then summed by role."""
    by_process: dict[str, list[float]] = {}
    count = 0
    for run in runs:
        count += 1
        for process, cost in run.items():
            by_process.setdefault(process, []).append(cost)
    medians = {process: statistics.median(costs) for process, costs in by_process.items()}

    def role(name: str) -> list[float]:
        return [cost for process, cost in sorted(medians.items()) if process.split("/")[0] == name]

    acceptors, workers = role("acceptor"), role("worker")
    return Inputs(
        row,
        router=sum(role("router")),
        acceptors=sum(acceptors),
        workers=sum(workers),
        single_acceptor=single_part(acceptors) if single_subscriber else 0.0,
        single_worker=single_part(workers) if single_subscriber else 0.0,
        runs=count,
    )


def rate(inputs: Inputs, acceptors: int, workers: int, routers: int = 1) -> tuple[float, str]:
    """(messages per second, what caps it) with this many processes."""
    # Caps that more processes cannot raise come first: on a tie, they are
    # what the split is bound by.
    bounds: list[tuple[float, str]] = []
    if inputs.single_acceptor:
        bounds.append((1.0 / inputs.single_acceptor, "one subscriber's acceptor"))
    if inputs.single_worker:
        bounds.append((1.0 / inputs.single_worker, "one subscriber's worker"))
    bounds.append((routers / inputs.router if inputs.router else float("inf"), "router"))
    bounds.append((acceptors / inputs.acceptors if inputs.acceptors else float("inf"), "acceptors"))
    bounds.append((workers / inputs.workers if inputs.workers else float("inf"), "workers"))
    per_us, bound = bounds[0]
    for value, name in bounds[1:]:
        if value < per_us * (1 - 1e-9):
            per_us, bound = value, name
    return per_us * 1e6, bound


def best_split(inputs: Inputs, cores: int) -> Prediction:
    """The (acceptors, workers, routers) with the highest rate on `cores`
    cores, one process per core (at least 1 + 1 + 1)."""
    best: Prediction | None = None
    budget = max(cores, 3)
    for routers in range(1, budget - 1):
        for acceptors in range(1, budget - routers):
            for workers in range(1, budget - routers - acceptors + 1):
                value, bound = rate(inputs, acceptors, workers, routers)
                if best is None or value > best.rate * (1 + 1e-9):
                    best = Prediction(cores, acceptors, workers, value, bound, routers)
    assert best is not None
    return best


def flockmq_runs(raw: dict[str, Any], row: str) -> list[dict[str, float]]:
    """The per-process costs of one row's flockmq runs in a bench raw file."""
    out = []
    for record in raw.get("runs", []):
        result = record.get("result") or {}
        costs = result.get("process_cpu_us_per_msg")
        if record.get("row") == row and record.get("target") == "flockmq" and costs:
            out.append({str(k): float(v) for k, v in costs.items()})
    return out


def table(all_inputs: Sequence[Inputs], cores: Sequence[int] = CORES) -> str:
    """The measured inputs and the predictions, as Markdown."""
    lines = [
        "| row | router R | acceptors A | workers W | one subscriber Sa / Sw | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i in all_inputs:
        lines.append(
            f"| {i.row} | {i.router:.1f} | {i.acceptors:.1f} | {i.workers:.1f} | "
            f"{i.single_acceptor:.1f} / {i.single_worker:.1f} | {i.runs} |"
        )
    lines += ["", "| row | " + " | ".join(f"{c} cores" for c in cores) + " |"]
    lines.append("| --- |" + " ---: |" * len(cores))
    for i in all_inputs:
        cells = []
        for c in cores:
            p = best_split(i, c)
            cells.append(
                f"{_human(p.rate)}/s ({p.acceptors}a+{p.workers}w+{p.routers}r; {p.bound})"
            )
        lines.append(f"| {i.row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _human(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.0f}k"
    return f"{value:.0f}"
