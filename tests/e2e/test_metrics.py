"""The Prometheus endpoint (issue 13): scraped over HTTP as Prometheus would,
and parsed with prometheus_client's own parser; every process, an auth
process (a hook is configured) and its counters included."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flockmq.app.probe import free_port

from .broker import MakeBroker
from .clients import Client, wait_for
from .hooks import use_test_hook


def scrape(port: int) -> dict[str, dict[tuple[str, str], float]]:
    """metric name -> (role, index) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    out: dict[str, dict[tuple[str, str], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = (sample.labels.get("role", ""), sample.labels.get("index", ""))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def test_every_process_is_scraped_with_prometheus_names(
    make_broker: MakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics_port = free_port()
    hook = use_test_hook(monkeypatch)  # so there is an auth process: it allows these clients
    broker = make_broker("--metrics-port", str(metrics_port), *hook, acceptors=2, workers=2)
    # ready is a CONNACK, which needs an acceptor and a worker, not the router
    wait_for(lambda: "metrics and dashboard on" in broker.log(), 30, "the metrics port")
    clients = [Client(broker.port) for _ in range(3)]
    for c in clients:
        c.connect()

    def connected() -> float:
        return sum(scrape(metrics_port).get("flockmq_clients_connected", {}).values())

    wait_for(lambda: connected() == 3, 30, "flockmq_clients_connected to sum to 3")
    metrics = scrape(metrics_port)
    processes = {("router", "0"), ("worker", "0"), ("worker", "1")}
    processes |= {("acceptor", "0"), ("acceptor", "1"), ("auth", "0")}
    wait_for(
        lambda: (
            set(scrape(metrics_port).get("flockmq_process_resident_memory_bytes", {})) == processes
        ),
        30,
        "every process's memory",
    )
    metrics = scrape(metrics_port)
    assert sum(metrics["flockmq_connects_total"].values()) >= 3
    assert all(v > 1_000_000 for v in metrics["flockmq_process_resident_memory_bytes"].values())
    rss, pss = (metrics[f"flockmq_process_{m}_memory_bytes"] for m in ("resident", "proportional"))
    assert set(pss) == processes and all(0 < pss[p] < rss[p] for p in processes)
    assert set(metrics["flockmq_process_cpu_seconds_total"]) == processes
    # the auth process's own counters: the three CONNECTs it allowed, its call time
    # (absent from a scrape until the auth process's first figures are in)
    auth = ("auth", "0")
    wait_for(
        lambda: (
            scrape(metrics_port).get("flockmq_hook_connects_allowed_total", {}).get(auth, 0) >= 3
        ),
        30,
        "the auth process's allowed CONNECTs",
    )
    metrics = scrape(metrics_port)
    assert metrics["flockmq_hook_call_seconds_total"][auth] > 0
    assert metrics["flockmq_hook_calls_running"][auth] == 0
    for c in clients:
        c.disconnect()
    wait_for(lambda: connected() == 0, 30, "flockmq_clients_connected to drop to 0")
