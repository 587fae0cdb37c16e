"""`--plot FILE.png`: throughput over time and the latency percentile curve.
matplotlib is imported here only, lazily, so that the load tester runs
without it (it is in pyproject's `bench` extra)."""

from __future__ import annotations

import itertools
from typing import Any

from loadgen.stats import LatencyHistogram

PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0)


def rates(timeline: list[tuple[float, int, int]]) -> list[tuple[float, float, float]]:
    """(time, send rate, delivery rate) between consecutive samples."""
    out = []
    for (t0, s0, d0), (t1, s1, d1) in itertools.pairwise(timeline):
        span = t1 - t0
        if span > 0:
            out.append((t1, (s1 - s0) / span, (d1 - d0) / span))
    return out


def draw(
    path: str,
    summary: dict[str, Any],
    timeline: list[tuple[float, int, int]],
    latency: LatencyHistogram,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7))
    title = f"{summary['scenario']} QoS {summary['qos']}"
    fig.suptitle(title)
    series = rates(timeline)
    if series:
        t, sent, delivered = zip(*series, strict=True)
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
