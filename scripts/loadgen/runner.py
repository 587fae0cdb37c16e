"""The coordinator: starts the client processes, moves them through the
phases (connect and subscribe; go; drain; stop), watches progress and the
broker's memory, and turns the workers' results into one summary.

Every phase is bounded by the run's deadline (--duration-limit), so a run
always ends. A run ends early once the publishers are done and every completed
message reached every subscriber that should have it, or once nothing new has
arrived for --drain-timeout seconds after the publishers finished (a loss).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from loadgen import broker_memory, broker_rss
from loadgen.progress import ProgressBar, human
from loadgen.scenarios import Plan, Settings, build_plan
from loadgen.stats import (
    DeliveryTotals,
    LatencyHistogram,
    guarantee_violations,
    total_deliveries,
)
from loadgen.worker import ConnectReport, Progress, WorkerResult, worker_main

RSS_INTERVAL = 0.5
STOP_GRACE = 15.0  # seconds past the deadline to collect results before killing workers

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_SETUP = 2
EXIT_INCOMPLETE = 3  # the deadline came first; nothing broken so far


@dataclass
class Outcome:
    summary: dict[str, Any]
    exit_code: int
    # per client process: (seconds since go, sent, delivered) samples
    series: list[list[tuple[float, int, int]]] = field(default_factory=list)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


class Coordinator:
    def __init__(self, settings: Settings, show_progress: bool) -> None:
        self.settings = settings
        self.plan: Plan = build_plan(settings, os.cpu_count() or 1)
        self.bar = ProgressBar(show_progress)
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.ready: dict[int, ConnectReport] = {}
        self.progress: dict[int, Progress] = {}
        self.published: dict[int, int] = {}
        self.results: dict[int, WorkerResult] = {}
        self.lost_workers: set[int] = set()
        self.crashes: list[str] = []
        self.timeline: list[tuple[float, int, int]] = []  # coarse sums, for the bar
        self.series: dict[int, list[tuple[float, int, int]]] = {}
        self.go = 0.0
        self.broker = broker_rss.find_broker(settings.port, None)
        self.rss_peak = 0
        self.rss_last = 0
        self.rss_next = 0.0
        self.timed_out = False
        # connections: the broker's RSS/PSS/USS per process, idle and while held
        self.memory_idle: list[broker_memory.Sample] = []
        self.memory_held: list[broker_memory.Sample] = []

    # --- processes -------------------------------------------------------------
    def spawn(self) -> None:
        ctx = multiprocessing.get_context("fork")
        counts = self.plan.publisher_counts
        for specs in self.plan.assignment:
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(specs, self.settings, counts, theirs), daemon=True
            )
            proc.start()
            theirs.close()
            self.conns.append(ours)
            self.procs.append(proc)

    def broadcast(self, message: tuple[Any, ...]) -> None:
        for i, conn in enumerate(self.conns):
            if i not in self.lost_workers:
                try:
                    conn.send(message)
                except OSError:
                    self.lost_workers.add(i)

    def poll(self, timeout: float) -> None:
        live = [
            c
            for i, c in enumerate(self.conns)
            if i not in self.lost_workers and i not in self.results
        ]
        for conn in wait(live, timeout=max(timeout, 0.0)):
            assert isinstance(conn, Connection)
            index = self.conns.index(conn)
            try:
                kind, body = conn.recv()
            except (EOFError, OSError):
                self.lost_workers.add(index)
                continue
            if kind == "ready":
                self.ready[index] = body
            elif kind == "progress":
                self.progress[index] = body
                if self.go:
                    sample = (body.at - self.go, body.sent, body.unique)
                    self.series.setdefault(index, []).append(sample)
            elif kind == "published":
                self.published[index] = body
            elif kind == "result":
                self.results[index] = body
            elif kind == "crashed":
                self.lost_workers.add(index)
                self.crashes.append(body.strip().splitlines()[-1])
        self.sample_rss()

    def sample_rss(self) -> None:
        now = time.monotonic()
        if not self.broker or now < self.rss_next:
            return
        self.rss_next = now + RSS_INTERVAL
        self.rss_last = broker_rss.total_rss(self.broker)
        self.rss_peak = max(self.rss_peak, self.rss_last)

    def set_broker(self, pid: int | None) -> None:
        self.broker = broker_rss.find_broker(self.settings.port, pid)

    # --- phases ------------------------------------------------------------------
    def run(self, broker_pid: int | None = None) -> Outcome:
        if broker_pid is not None:
            self.set_broker(broker_pid)
        started = time.monotonic()
        deadline = started + self.settings.duration_limit
        self.sample_rss()
        rss_idle = self.rss_last
        if self.settings.scenario == "connections":
            self.memory_idle = broker_memory.sample_roots(self.broker)
        try:
            self.spawn()
            self.await_ready(deadline)
            setup_failed = self.setup_failed()
            go_ns = time.monotonic_ns()
            go = self.go = time.monotonic()
            if not setup_failed:
                self.broadcast(("go", go_ns))
                if self.settings.scenario == "connections":
                    self.hold(min(go + self.settings.hold, deadline))
                    self.memory_held = broker_memory.sample_roots(self.broker)
                elif self.settings.scenario == "connect-rate":
                    self.await_connects(go, deadline)
                else:
                    self.await_delivery(go, deadline)
            ended = time.monotonic()
            self.collect(deadline + STOP_GRACE)
        finally:
            self.bar.close()
            self.reap()
        return self.outcome(go_ns, ended - go, rss_idle, setup_failed)

    def await_ready(self, deadline: float) -> None:
        total = sum(len(a) for a in self.plan.assignment)
        while len(self.ready) + len(self.lost_workers) < len(self.conns):
            if time.monotonic() >= deadline:
                self.timed_out = True
                return
            self.poll(min(0.2, deadline - time.monotonic()))
            connected = sum(r.connected for r in self.ready.values())
            self.bar.update(connected / max(total, 1), f"connecting {human(connected)}/{total}")

    def setup_failed(self) -> bool:
        if self.lost_workers or len(self.ready) < len(self.conns):
            return True
        if self.settings.scenario == "connections":
            return not any(r.connected for r in self.ready.values())
        return any(r.failed for r in self.ready.values())

    def hold(self, until: float) -> None:
        start = time.monotonic()
        while (now := time.monotonic()) < until and not self.lost_workers:
            self.poll(min(0.2, until - now))
            alive = sum(p.alive for p in self.progress.values())
            span = max(until - start, 1e-9)
            self.bar.update((now - start) / span, f"holding {human(alive)} connections")

    def await_connects(self, go: float, deadline: float) -> None:
        """connect-rate: until every process has connected each of its clients."""
        total = len(self.plan.churn)
        while len(self.published) < len(self.conns) and not self.lost_workers:
            now = time.monotonic()
            if now >= deadline:
                self.timed_out = True
                return
            self.poll(min(0.2, deadline - now))
            done = sum(p.completed for p in self.progress.values())
            rate = done / max(time.monotonic() - go, 1e-9)
            self.bar.update(
                done / max(total, 1), f"connected {human(done)}/{total} {human(rate)}/s"
            )

    def await_delivery(self, go: float, deadline: float) -> None:
        plan = self.plan
        per_message = plan.expected_deliveries / max(plan.total_messages, 1)
        full = plan.expected_deliveries
        last_unique = -1
        quiet_since = time.monotonic()
        while not self.lost_workers:
            now = time.monotonic()
            if now >= deadline:
                self.timed_out = True
                return
            self.poll(min(0.2, deadline - now))
            now = time.monotonic()
            sent = sum(p.sent for p in self.progress.values())
            completed = sum(p.completed for p in self.progress.values())
            unique = sum(p.unique for p in self.progress.values())
            if not self.timeline or now - go - self.timeline[-1][0] >= 0.5:
                self.timeline.append((now - go, sent, unique))
            self.draw(now - go, sent, unique, full)
            if unique != last_unique:
                last_unique, quiet_since = unique, now
            if len(self.published) < len(self.conns):
                continue
            # Final counts arrive with the next progress report after "published".
            if unique >= completed * per_message and unique >= full:
                return
            if now - quiet_since >= self.settings.drain_timeout:
                return

    def draw(self, elapsed: float, sent: int, unique: int, full: int) -> None:
        if len(self.timeline) >= 3:
            t0, _, u0 = self.timeline[-3]
            rate = (unique - u0) / max(elapsed - t0, 1e-9)
        else:
            rate = unique / max(elapsed, 1e-9)
        self.bar.update(
            unique / max(full, 1),
            f"sent {human(sent)} recv {human(unique)}/{human(full)} {human(rate)}/s {elapsed:.1f}s",
        )

    def collect(self, until: float) -> None:
        self.broadcast(("stop",))
        while len(self.results) + len(self.lost_workers) < len(self.conns):
            now = time.monotonic()
            if now >= until:
                return
            self.poll(min(0.5, until - now))

    def reap(self) -> None:
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()

    # --- summary -------------------------------------------------------------------
    def outcome(self, go_ns: int, seconds: float, rss_idle: int, setup_failed: bool) -> Outcome:
        s = self.settings
        results = list(self.results.values())
        latency = LatencyHistogram()
        completed_maps: dict[int, bytes] = {}
        trackers = []
        errors: list[str] = []
        for r in results:
            latency.merge(LatencyHistogram.from_wire(r.latency))
            completed_maps.update(r.completed_bitmaps)
            trackers.extend(r.trackers)
            errors.extend(r.errors)
        for report in self.ready.values():
            errors.extend(e for e in report.errors if e not in errors)
        if self.lost_workers:
            errors.append(f"{len(self.lost_workers)} client process(es) died")
            errors.extend(self.crashes)
        missing = len(self.conns) - len(self.results) - len(self.lost_workers)
        if missing:
            errors.append(f"{missing} client process(es) did not report")
        totals = total_deliveries(trackers, completed_maps)
        sent = sum(r.sent for r in results)
        last_pub = max((r.last_publish_ns for r in results), default=0)
        last_rx = max((r.last_receive_ns for r in results), default=0)
        pub_s = (last_pub - go_ns) / 1e9 if last_pub > go_ns else seconds
        rx_s = (last_rx - go_ns) / 1e9 if last_rx > go_ns else seconds
        per_message = self.plan.expected_deliveries / max(self.plan.total_messages, 1)
        summary: dict[str, Any] = {
            "scenario": s.scenario,
            "qos": s.qos,
            "protocol": s.protocol,
            "clean": s.clean,
            "payload": s.payload,
            "publishers": len(self.plan.publishers),
            "subscribers": len(self.plan.subscribers),
            "processes": len(self.conns),
        }
        if s.scenario == "connections":
            summary.update(self.connection_summary(rss_idle))
        elif s.scenario == "connect-rate":
            summary.update(connect_rate_summary(results, go_ns, seconds))
        else:
            summary.update(
                {
                    "sent": sent,
                    "completed": sum(r.completed for r in results),
                    "expected": totals.expected,
                    "received": totals.received,
                    "delivered": totals.unique,
                    "lost": totals.lost,
                    "dup": totals.duplicates,
                    "dup_flagged": totals.dup_flagged,
                    "out_of_order": totals.out_of_order,
                    "unexpected": sum(r.unexpected for r in results),
                    "rejected": sum(r.rejected for r in results),
                    "send_msgs_per_s": round(sent / max(pub_s, 1e-9)),
                    "recv_msgs_per_s": round(totals.unique / per_message / max(rx_s, 1e-9))
                    if per_message
                    else 0,
                    "deliveries_per_s": round(totals.unique / max(rx_s, 1e-9)),
                    "latency_p50_us": _us(latency.percentile(50)),
                    "latency_p99_us": _us(latency.percentile(99)),
                    "latency_p999_us": _us(latency.percentile(99.9)),
                    "latency_max_us": _us(latency.max_value),
                    "dropped_connections": sum(r.dropped for r in results),
                }
            )
        summary["broker_rss_peak_mb"] = _mb(self.rss_peak) if self.broker else None
        summary["duration_s"] = round(seconds, 3)
        summary["timed_out"] = self.timed_out
        violations = summary["violations"] = self.violations(summary, totals)
        summary["errors"] = errors[:10]
        if setup_failed or self.lost_workers:
            code = EXIT_SETUP
        elif violations:
            code = EXIT_VIOLATION
        elif self.timed_out:
            code = EXIT_INCOMPLETE
        else:
            code = EXIT_OK
        summary["exit_code"] = code
        return Outcome(summary, code, list(self.series.values()), latency)

    def violations(self, summary: dict[str, Any], totals: DeliveryTotals) -> list[str]:
        """What the run broke: a QoS promise, or (connect-rate) a connect with
        good credentials that was refused, timed out or never tried."""
        scenario = self.settings.scenario
        if scenario == "connections":
            return []
        if scenario == "connect-rate":
            missing = len(self.plan.churn) - summary["connects"]
            return [f"{missing} of {len(self.plan.churn)} connects failed"] if missing else []
        return guarantee_violations(self.settings.qos, totals)

    def connection_summary(self, rss_idle: int) -> dict[str, Any]:
        reports = list(self.ready.values())
        connected = sum(r.connected for r in reports)
        connect_s = max((r.seconds for r in reports), default=0.0)
        held = sum(r.alive for r in self.results.values())
        # RSS while they are held (the end of the hold), not at the last
        # sample, which may come while the broker is closing them
        rss_held = sum(s.rss for s in self.memory_held) or self.rss_last
        per_conn = (rss_held - rss_idle) / held if held and self.broker else None
        return {
            "connections": self.settings.connections,
            "connected": connected,
            "failed": sum(r.failed for r in reports),
            "held": held,
            "dropped_connections": sum(r.dropped for r in self.results.values()),
            "connect_s": round(connect_s, 3),
            "connects_per_s": round(connected / max(connect_s, 1e-9)),
            "hold_s": self.settings.hold,
            "broker_rss_end_mb": _mb(rss_held) if self.broker else None,
            "broker_kb_per_connection": round(per_conn / 1024, 2) if per_conn else None,
            **broker_memory.per_connection(self.memory_idle, self.memory_held, held),
        }


def connect_rate_summary(results: list[WorkerResult], go_ns: int, seconds: float) -> dict[str, Any]:
    """connect-rate: connects completed (CONNACK 0) per second, from "go" to
    the last CONNACK of any process."""
    connects = sum(r.completed for r in results)
    last = max((r.last_publish_ns for r in results), default=0)
    span = (last - go_ns) / 1e9 if last > go_ns else seconds
    return {
        "connects": connects,
        "failed": sum(r.failed for r in results),
        "connect_s": round(span, 3),
        "connects_per_s": round(connects / max(span, 1e-9)),
    }


def _us(ns: int) -> float:
    return round(ns / 1000, 1)


def _mb(n: int) -> float:
    return round(n / 2**20, 1)
