"""The Prometheus endpoint (issue 13): every counter and gauge of every broker
process, in Prometheus's text format, from the values the router already
collects for `$SYS` (router/sys_topics.py).

Served by the router process when `metrics_port` is set, on the broker's
`host`, by a small `http.server` in threads (they read a copy of the table,
which the event loop keeps writing): `/metrics` (prometheus_client's
`generate_latest`), `/` the live dashboard (router/dashboard.html, one static
page) and `/status.json`, the report `flockmq status --json` prints, asked of
every process's control socket (flockmq/app/control.py). Names follow Prometheus's
conventions: `flockmq_<counter>_total{role="acceptor",index="0"}` for counts
since start, `flockmq_<gauge>{...}` for values now, and per process
`flockmq_process_cpu_seconds_total`, `flockmq_process_resident_memory_bytes`
and `flockmq_process_open_fds`.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
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
    "process_pss_bytes": (
        "process_proportional_memory_bytes",
        "proportional set size: shared pages divided among the processes sharing them",
        1.0,
    ),
    "process_open_fds": ("process_open_fds", "open file descriptors", 1.0),
}
# an auth process's hook time (flockmq/auth/counting.py), counted in microseconds
SCALED = {
    **PROCESS,
    "hook_call_us": ("hook_call_seconds_total", "time in auth hook calls", 0.000001),
}
# values now of auth processes (flockmq/auth/process.py)
AUTH_GAUGES = frozenset({"hook_calls_running", "hook_threads_busy"})
STATE = GAUGES | AUTH_GAUGES | {"sessions"}


class BrokerCollector(Collector):
    def __init__(self, sys_topics: SysTopics) -> None:
        self.sys_topics = sys_topics

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[tuple[str, int, int]]] = {}
        for (role, index, name), value in dict(self.sys_topics.process_values).items():
            by_name.setdefault(name, []).append((role, index, value))
        for name in sorted(by_name):
            family = _family(name)
            scale = SCALED[name][2] if name in SCALED else 1.0
            for role, index, value in sorted(by_name[name]):
                family.add_metric([role, str(index)], value * scale)
            yield family


def _family(name: str) -> GaugeMetricFamily | CounterMetricFamily:
    if name in SCALED:
        metric, what, _scale = SCALED[name]
        if metric.endswith("_total"):
            return CounterMetricFamily(f"flockmq_{metric[:-6]}", what, labels=LABELS)
        return GaugeMetricFamily(f"flockmq_{metric}", what, labels=LABELS)
    if name in STATE:
        return GaugeMetricFamily(f"flockmq_{name}", f"{name} (now), per process", labels=LABELS)
    # CounterMetricFamily adds the _total suffix
    return CounterMetricFamily(f"flockmq_{name}", f"{name} since start, per process", labels=LABELS)


def dashboard_page() -> bytes:
    return resources.files("flockmq.router").joinpath("dashboard.html").read_bytes()


def make_handler(
    registry: CollectorRegistry, status: Callable[[], object]
) -> type[http.server.BaseHTTPRequestHandler]:
    page = dashboard_page()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/metrics":
                self.answer(generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/status.json":
                self.answer(json.dumps(status()).encode(), "application/json")
            elif path in ("/", "/index.html"):
                self.answer(page, "text/html; charset=utf-8")
            else:
                self.send_error(404)

        def answer(self, body: bytes, kind: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds is not news

    return Handler


def serve_metrics(host: str, port: int, sys_topics: SysTopics, runtime_dir: str) -> None:
    from flockmq.app.control import StatusSampler

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(sys_topics))
    sampler = StatusSampler(runtime_dir, interval=1.0)
    server = http.server.ThreadingHTTPServer((host, port), make_handler(registry, sampler.report))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics and dashboard on http://%s:%d/", host, port)
