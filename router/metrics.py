"""The Prometheus endpoint (issue 13): every counter and gauge of every broker
process, in Prometheus's text format, from the values the router already
collects for `$SYS` (router/sys_topics.py).

Served by the router process when `metrics_port` is set, on the broker's
`host`, by prometheus_client's own HTTP server (a thread: it reads a copy of
the table, which the event loop keeps writing). Names follow Prometheus's
conventions: `flockmq_<counter>_total{role="acceptor",index="0"}` for counts
since start, `flockmq_<gauge>{...}` for values now, and per process
`flockmq_process_cpu_seconds_total`, `flockmq_process_resident_memory_bytes`
and `flockmq_process_open_fds`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .sys_topics import GAUGES

if TYPE_CHECKING:
    from .sys_topics import SysTopics

log = logging.getLogger("flockmq.router")

LABELS = ["role", "index"]
# the per-process values published by flockmq/sysstats.py's process gauges
PROCESS = {
    "process_cpu_ms": ("process_cpu_seconds_total", "CPU time of the process", 0.001),
    "process_rss_bytes": ("process_resident_memory_bytes", "resident memory", 1.0),
    "process_open_fds": ("process_open_fds", "open file descriptors", 1.0),
}
STATE = GAUGES | {"sessions"}


class BrokerCollector(Collector):
    def __init__(self, sys_topics: SysTopics) -> None:
        self.sys_topics = sys_topics

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[tuple[str, int, int]]] = {}
        for (role, index, name), value in dict(self.sys_topics.process_values).items():
            by_name.setdefault(name, []).append((role, index, value))
        for name in sorted(by_name):
            family = _family(name)
            scale = PROCESS[name][2] if name in PROCESS else 1.0
            for role, index, value in sorted(by_name[name]):
                family.add_metric([role, str(index)], value * scale)
            yield family


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    if name in PROCESS:
        metric, what, _scale = PROCESS[name]
        if metric.endswith("_total"):
            return CounterMetricFamily(f"flockmq_{metric[:-6]}", what, labels=LABELS)
        return GaugeMetricFamily(f"flockmq_{metric}", what, labels=LABELS)
    if name in STATE:
        return GaugeMetricFamily(f"flockmq_{name}", f"{name} (now), per process", labels=LABELS)
    # CounterMetricFamily adds the _total suffix
    return CounterMetricFamily(f"flockmq_{name}", f"{name} since start, per process", labels=LABELS)


def serve_metrics(host: str, port: int, sys_topics: SysTopics) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(sys_topics))
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)
