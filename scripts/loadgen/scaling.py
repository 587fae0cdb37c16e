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


# The cluster case (issue 14). Per host, a cluster node is the single-host
# model above (its acceptors, its router, its workers on its C cores); a
# message that crosses hosts also pays the hop, measured by make bench's
# cluster row (scripts/bench_cluster.py: 1, 2 and 3 hosts that are network
# namespaces of the bench machine, publishers on the first host and
# subscribers on the last, so on 2 or 3 hosts every delivery crosses).
#
# The hop's cost per delivery: the bench machine's CPU time per delivery
# (its cores / deliveries per second: the row keeps every core busy, an
# assumption) on 2 or 3 hosts minus on 1, the larger of the two. Runs of
# one cell differ by up to 2x on the shared 2-core machine, so the
# difference is compared with the noise band (the 1-host runs' spread,
# NOISE of the cost with fewer than 2 runs): within it, the hop is not
# resolved, and the model gives both the measured difference (0 if
# negative) and the upper bound the runs do not rule out (difference +
# noise band). With uniform placement a fraction (n-1)/n of the deliveries
# crosses, and the hop's CPU is assumed to spread over a host's processes
# as their own work does:
#
#     cluster(n, C) = n * best_split(C).rate * T / (T + (n-1)/n * H)
#
# T: the row's CPU per delivery (R + A + W), H: the hop's. A veth pair is
# cheaper than a network: a real hop adds the network's latency (not
# throughput, while the links are not full).

CLUSTER_ROWS = {"pairs-q1": "pairs-q1", "fanout-q0": "fanout-q0"}  # cluster row -> model row
HOSTS = (1, 2, 4, 8)
CLUSTER_CORES = (8, 16)
NOISE = 0.5  # relative spread assumed with fewer than 2 runs (README: up to 2x)


@dataclass(frozen=True, slots=True)
class Hop:
    """One row's cost of crossing hosts, µs of the bench machine's CPU per delivery."""

    row: str
    base: float  # 1 host
    crossed: dict[int, float]  # hosts (2, 3) -> cost per delivery
    noise: float  # the noise band around `base`

    @property
    def extra(self) -> float:
        """The measured difference (may be negative): the larger of the host counts'."""
        return max(cost - self.base for cost in self.crossed.values())

    @property
    def within_noise(self) -> bool:
        return abs(self.extra) <= self.noise

    @property
    def used(self) -> float:
        return max(0.0, self.extra)

    @property
    def upper(self) -> float:
        return self.used + self.noise if self.within_noise else self.used


def per_delivery(rates: Sequence[float], cores: int) -> float:
    """µs of `cores` busy cores per delivery at the runs' median rate."""
    return cores * 1e6 / statistics.median(rates)


def spread(rates: Sequence[float]) -> float:
    """The runs' relative spread ((max - min) / median); NOISE for one run."""
    if len(rates) < 2:
        return NOISE
    return (max(rates) - min(rates)) / statistics.median(rates)


def hop_of(row: str, rates: dict[int, list[float]], cores: int) -> Hop | None:
    """`rates`: hosts -> the runs' deliveries/s. None without the 1-host
    runs or without any of more hosts."""
    base_runs = rates.get(1) or []
    crossed = {n: per_delivery(r, cores) for n, r in sorted(rates.items()) if n > 1 and r}
    if not base_runs or not crossed:
        return None
    base = per_delivery(base_runs, cores)
    return Hop(row, base, crossed, spread(base_runs) * base)


def cluster_rate(inputs: Inputs, hop: float, hosts: int, cores: int) -> float:
    """Deliveries/s of `hosts` hosts of `cores` cores each, a hop costing
    `hop` µs per delivery that crosses, placement uniform."""
    crossing = (hosts - 1) / hosts
    per_host = best_split(inputs, cores).rate
    total = inputs.total
    return hosts * per_host * (total / (total + crossing * hop) if total else 1.0)


def cluster_table(
    pairs: Sequence[tuple[Inputs, Hop]],
    hosts: Sequence[int] = HOSTS,
    cores: Sequence[int] = CLUSTER_CORES,
) -> str:
    """The hops measured, then n hosts of C cores: hop as measured / at its upper bound."""
    counts = sorted({n for _i, h in pairs for n in h.crossed})
    lines = [
        "| row | 1 host µs/delivery | "
        + " | ".join(f"{n} hosts" for n in counts)
        + " | hop H µs | noise ± µs | model uses |",
        "| --- | ---: |" + " ---: |" * len(counts) + " ---: | ---: | --- |",
    ]
    for _inputs, h in pairs:
        costs = " | ".join(f"{h.crossed[n]:.1f}" if n in h.crossed else "-" for n in counts)
        uses = (
            f"{h.used:.1f} (within noise; upper bound {h.upper:.1f})"
            if h.within_noise
            else f"{h.used:.1f}"
        )
        lines.append(
            f"| {h.row} | {h.base:.1f} | {costs} | {h.extra:+.1f} | {h.noise:.1f} | {uses} |"
        )
    header = [f"{n} x {c} cores" for n in hosts for c in cores]
    lines += ["", "| row | " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(header)]
    for inputs, h in pairs:
        cells = []
        for n in hosts:
            for c in cores:
                low = cluster_rate(inputs, h.upper, n, c)
                high = cluster_rate(inputs, h.used, n, c)
                cells.append(_human(high) if low == high else f"{_human(high)} / {_human(low)}")
        lines.append(f"| {inputs.row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
