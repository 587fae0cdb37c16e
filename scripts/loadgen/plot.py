"""`--plot FILE.png`: throughput over time and the latency percentile curve.
matplotlib is imported here only, lazily, so that the load tester runs
without it (it is in pyproject's `bench` extra)."""

from __future__ import annotations

import bisect
from typing import Any

from loadgen.stats import LatencyHistogram

PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)


STEP = 0.25  # seconds between the points of the throughput curve


def value_at(samples: list[tuple[float, int, int]], t: float) -> tuple[float, float]:
    """A process's cumulative (sent, delivered) at time t, interpolated
    linearly between its samples; 0 before the first, flat after the last."""
    times = [s[0] for s in samples]
    i = bisect.bisect_right(times, t)
    if i == 0:
        t1, s1, d1 = samples[0]
        share = t / t1 if t1 > 0 and t > 0 else 0.0
        return s1 * share, d1 * share
    if i == len(samples):
        return float(samples[-1][1]), float(samples[-1][2])
    (t0, s0, d0), (t1, s1, d1) = samples[i - 1], samples[i]
    share = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
    return s0 + (s1 - s0) * share, d0 + (d1 - d0) * share


def rates(
    series: list[list[tuple[float, int, int]]], step: float = STEP
) -> list[tuple[float, float, float]]:
    """(time, send rate, delivery rate) of all processes together on a common
    grid: each process's counts are interpolated to the grid, then summed, so
    reports arriving at different moments do not make spikes."""
    series = [s for s in series if s]
    if not series:
        return []
    end = max(s[-1][0] for s in series)
    out = []
    prev = (0.0, 0.0)
    t = step
    while t <= end + step / 2:
        points = [value_at(s, t) for s in series]
        now = (sum(p[0] for p in points), sum(p[1] for p in points))
        out.append((t, (now[0] - prev[0]) / step, (now[1] - prev[1]) / step))
        prev = now
        t += step
    return out


def draw(
    path: str,
    summary: dict[str, Any],
    series: list[list[tuple[float, int, int]]],
    latency: LatencyHistogram,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7))
    title = f"{summary['scenario']} QoS {summary['qos']}"
    fig.suptitle(title)
    curve = rates(series)
    if curve:
        t, sent, delivered = zip(*curve, strict=True)
        top.plot(t, sent, label="sent msg/s")
        top.plot(t, delivered, label="delivered msg/s")
        top.legend()
    top.set_xlabel("seconds")
    top.set_ylabel("messages/s")
    top.grid(True, alpha=0.3)
    if latency.total:
        xs = [1 / (1 - p / 100) if p < 100 else 1 / (1 - 0.99999) for p in PERCENTILES]
        ys = [latency.percentile(p) / 1000 for p in PERCENTILES]
        bottom.plot(xs, ys, marker="o")
        bottom.set_xscale("log")
        bottom.set_xticks(xs)
        bottom.set_xticklabels([f"p{p:g}" if p < 100 else "max" for p in PERCENTILES])
    bottom.set_ylabel("latency (µs)")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
