"""`make bench`: flockmq against Mosquitto on one machine, with the bundled
load generator, plus the codec micro-benchmark.

    .venv/bin/python scripts/bench.py [--runs 3] [--quick] [--only ROW,...]
                                      [--chart FILE.png] [--raw FILE.json]
                                      [--generator native|python]

The generator is the native one (scripts/loadgen/native/, C, built on
first use into build/bench/) unless --generator python, or unless it cannot be
built or does not implement a row: then scripts/loadtest.py, with the same
options and the same JSON line. Each run's record says which one ran
("generator"), and so does its progress line (scripts/loadgen/generator.py).

Each row runs the load tester against a freshly started broker, alternating
the two brokers (and their order) for --runs rounds, and the table shows the
medians with the ratio flockmq/Mosquitto, plus the lost/duplicate/out-of-order
sums of every run so that a broken QoS guarantee is visible next to the speed.
Every load-test run is bounded in time (--duration-limit) and every broker is
stopped by its pid (SIGTERM, then SIGKILL). Benchmarks are not tests: this
reports figures and exits 0 unless a run broke a QoS guarantee or failed.

The TLS and password rows give both brokers the same listener: certificates
(trustme) and a `$7$` password file made once per bench run in a temporary
directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from loadgen import broker_memory, cluster_rows
from loadgen.brokers import PLAIN, BrokerError, BrokerProcess, Security, find_mosquitto
from loadgen.credentials import (
    PasswordFiles,
    TlsFiles,
    make_certificates,
    make_password_files,
)
from loadgen.generator import GENERATORS, PYTHON, Generator, build_native, choose
from loadgen.progress import human

from flockmq.app.proctitle import ROLES

SCRIPTS = Path(__file__).resolve().parent
BENCH_CODEC = SCRIPTS / "bench_codec.py"
BENCH_BUS = SCRIPTS / "bench_bus.py"


@dataclass(frozen=True)
class Target:
    label: str
    kind: str  # "flockmq" or "mosquitto"
    args: tuple[str, ...] = ()


FLOCKMQ = Target("flockmq", "flockmq", ("--acceptors", "2", "--workers", "2"))
FLOCKMQ_1X1 = Target("flockmq 1x1", "flockmq", ("--acceptors", "1", "--workers", "1"))
# Each process may hold 20,000 descriptors here: two acceptors cannot hold
# 40,000 sockets plus their own descriptors, three can.
FLOCKMQ_3X2 = Target("flockmq 3x2", "flockmq", ("--acceptors", "3", "--workers", "2"))
FLOCKMQ_POWER = Target(
    "flockmq power", "flockmq", ("--acceptors", "2", "--workers", "2", "--durability", "power")
)
MOSQUITTO = Target("mosquitto", "mosquitto")


@dataclass(frozen=True)
class Metric:
    key: str  # a key of the load tester's JSON line
    label: str
    higher_is_better: bool = True


DELIVERIES = Metric("deliveries_per_s", "deliveries/s")
RSS = Metric("broker_rss_peak_mb", "broker RSS peak MB", higher_is_better=False)
# CPU time per delivered message, summed over every process of the broker
# (psutil) and of the load generator (getrusage of its process tree) over the
# run: it does not depend on who is the bottleneck, and a generator that needs
# as much CPU per message as the broker measures itself, not the broker.
CPU = Metric("broker_cpu_us_per_msg", "broker CPU µs/msg", higher_is_better=False)
CONNECT_CPU = Metric("broker_cpu_us_per_connect", "broker CPU µs/connect", higher_is_better=False)
GENERATOR_CONNECT_CPU = Metric(
    "generator_cpu_us_per_connect", "generator CPU µs/connect", higher_is_better=False
)
GENERATOR_CPU = Metric("generator_cpu_us_per_msg", "generator CPU µs/msg", higher_is_better=False)
# How much faster the generator could go: the CPU its processes could have
# used over the run (one core each, no more cores than the machine has) over
# what they used. Under GENERATOR_BOUND
# the row's figure may be the generator's, not the broker's: flagged.
HEADROOM = Metric("generator_headroom", "generator headroom x")
GENERATOR_BOUND = 1.5


@dataclass(frozen=True)
class Row:
    name: str
    title: str
    args: tuple[str, ...]  # load tester arguments, scenario first
    quick: tuple[str, ...]  # appended in --quick mode (later options win in click)
    metrics: tuple[Metric, ...] = (DELIVERIES, CPU, GENERATOR_CPU, HEADROOM, RSS)
    targets: tuple[Target, Target] = (FLOCKMQ, MOSQUITTO)
    checks_delivery: bool = True  # report lost/dup/out-of-order
    # What CPU is counted per: the result's key, and the unit in metric keys
    # ("broker_cpu_us_per_<unit>").
    per: tuple[str, str] = ("delivered", "msg")
    tls: bool = False  # every client and both brokers' listener speak TLS
    passwords: bool = False  # both brokers check a password file; no anonymous clients
    # with `passwords`: a user of its own for every client (each password
    # hashed: nothing a broker remembers of a match helps), else 5 users
    # taken in turn, as a fleet's devices reconnecting
    unique_users: bool = False
    # Mosquitto's set_tcp_nodelay (scripts/loadgen/brokers.py mosquitto_conf):
    # off, its default, in throughput rows; on where latency is measured.
    mosquitto_nodelay: bool = False


UNIQUE_USERS = 10_000  # the connects-unique-users row's password file

# Counts are sized so that a row takes ~5-10 s per broker on a 2-core machine.
ROWS = (
    Row(
        "fanin-q0",
        "fan-in 4->1, QoS 0",
        ("fanin", "--publishers", "4", "--qos", "0", "--count", "300000"),
        ("--count", "30000"),
    ),
    Row(
        "fanin-q1",
        "fan-in 4->1, QoS 1",
        ("fanin", "--publishers", "4", "--qos", "1", "--count", "100000"),
        ("--count", "10000"),
    ),
    Row(
        "fanin-q2",
        "fan-in 4->1, QoS 2",
        ("fanin", "--publishers", "4", "--qos", "2", "--count", "50000"),
        ("--count", "5000"),
    ),
    Row(
        "fanout-q0",
        "fan-out 1->100, QoS 0",
        ("fanout", "--subscribers", "100", "--qos", "0", "--count", "10000"),
        ("--count", "1000"),
    ),
    Row(
        "pairs-q1",
        "100 pairs, QoS 1",
        ("pairs", "--pairs", "100", "--qos", "1", "--count", "100000"),
        ("--count", "10000"),
    ),
    # The cost of durability: the same loads into persistent sessions (clean
    # session 0), which flockmq commits to its store (durability=process) before
    # acknowledging; compare with fanin-q1 and pairs-q1 above.
    Row(
        "fanin-q1-persistent",
        "fan-in 4->1, QoS 1, persistent sessions",
        ("fanin", "--publishers", "4", "--qos", "1", "--count", "100000", "--persistent"),
        ("--count", "10000"),
    ),
    Row(
        "pairs-q1-persistent",
        "100 pairs, QoS 1, persistent sessions",
        ("pairs", "--pairs", "100", "--qos", "1", "--count", "100000", "--persistent"),
        ("--count", "10000"),
    ),
    # durability=power: an fsync per group commit (see README, "Durability").
    Row(
        "pairs-q1-power",
        "100 pairs, QoS 1, persistent sessions, durability=power",
        ("pairs", "--pairs", "100", "--qos", "1", "--count", "100000", "--persistent"),
        ("--count", "10000"),
        targets=(FLOCKMQ_POWER, MOSQUITTO),
    ),
    # Issue 11: the same fan-in over TLS, both brokers serving the same
    # certificate (ECDSA P-256 from trustme), every client verifying it.
    Row(
        "fanin-q1-tls",
        "fan-in 4->1, QoS 1, TLS",
        ("fanin", "--publishers", "4", "--qos", "1", "--count", "100000"),
        ("--count", "10000"),
        tls=True,
    ),
    # Issue 11: new connections per second, each with a username and password
    # checked against the same $7$ (PBKDF2-SHA512, 101 iterations) password
    # file. 4 processes x 25 handshakes at a time: 100 in flight, within
    # Mosquitto's listen backlog of 100; past it the kernel drops SYNs, and a
    # run measures the 1 s SYN retry instead of the broker.
    Row(
        "connects-passwords",
        "new connections/s, password checks",
        (
            "connect-rate",
            "--connections",
            "10000",
            "--processes",
            "4",
            "--connect-concurrency",
            "25",
        ),
        ("--connections", "2000"),
        metrics=(
            Metric("connects_per_s", "connects/s"),
            CONNECT_CPU,
            GENERATOR_CONNECT_CPU,
            HEADROOM,
            RSS,
        ),
        checks_delivery=False,
        per=("connects", "connect"),
        passwords=True,
    ),
    # The same, but no client reuses a user: every CONNECT costs a broker the
    # full PBKDF2 (flockmq's remembered matches never apply).
    Row(
        "connects-unique-users",
        "new connections/s, a user each",
        (
            "connect-rate",
            "--connections",
            str(UNIQUE_USERS),
            "--processes",
            "4",
            "--connect-concurrency",
            "25",
        ),
        ("--connections", "2000"),
        metrics=(
            Metric("connects_per_s", "connects/s"),
            CONNECT_CPU,
            GENERATOR_CONNECT_CPU,
            HEADROOM,
            RSS,
        ),
        checks_delivery=False,
        per=("connects", "connect"),
        passwords=True,
        unique_users=True,
    ),
    Row(
        "latency",
        "latency at 10k msg/s, QoS 0",
        ("latency", "--rate", "10000", "--qos", "0", "--count", "60000"),
        ("--count", "10000"),
        metrics=(
            Metric("latency_p50_us", "latency p50 µs", higher_is_better=False),
            Metric("latency_p99_us", "latency p99 µs", higher_is_better=False),
            Metric("latency_p999_us", "latency p99.9 µs", higher_is_better=False),
        ),
        mosquitto_nodelay=True,
    ),
    Row(
        "connections",
        "40,000 idle connections",
        ("connections", "--connections", "40000", "--hold", "5"),
        ("--connections", "5000", "--hold", "2"),
        metrics=(
            Metric("held", "connections held"),
            Metric("connects_per_s", "connects/s"),
            RSS,
        ),
        checks_delivery=False,
    ),
    Row(
        "connections-3x2",
        "40,000 idle connections, 3 acceptors",
        ("connections", "--connections", "40000", "--hold", "5"),
        ("--connections", "5000", "--hold", "2"),
        metrics=(
            Metric("held", "connections held"),
            Metric("connects_per_s", "connects/s"),
            RSS,
        ),
        checks_delivery=False,
        targets=(FLOCKMQ_3X2, MOSQUITTO),
    ),
    Row(
        "scaling-q1",
        "fan-in 4->1 QoS 1: 2x2 vs 1x1 processes",
        ("fanin", "--publishers", "4", "--qos", "1", "--count", "100000"),
        ("--count", "10000"),
        metrics=(DELIVERIES,),
        targets=(FLOCKMQ, FLOCKMQ_1X1),
    ),
)


@dataclass(frozen=True)
class Secrets:
    """The TLS and password files of this bench run, shared by both brokers
    and the generator."""

    directory: Path
    tls: TlsFiles
    passwords: PasswordFiles
    unique: PasswordFiles | None  # UNIQUE_USERS users, if a row wants them

    @classmethod
    def make(cls, unique_users: bool = False) -> Secrets:
        directory = Path(tempfile.mkdtemp(prefix="bench-secrets-"))
        unique = None
        if unique_users:
            where = directory / "unique"
            where.mkdir()
            unique = make_password_files(where, UNIQUE_USERS)
        return cls(directory, make_certificates(directory), make_password_files(directory), unique)

    def files_for(self, row: Row) -> PasswordFiles:
        if row.unique_users:
            if self.unique is None:
                raise ValueError(f"{row.name}: no file of unique users was made")
            return self.unique
        return self.passwords

    def security(self, row: Row) -> Security:
        """What the brokers' listener asks of clients in `row`."""
        passwords = self.files_for(row) if row.passwords else None
        return Security(
            tls=self.tls if row.tls else None,
            password_file=passwords.password_file if passwords else None,
            probe_user=passwords.users[0] if passwords else None,
        )

    def loadtest_args(self, row: Row) -> list[str]:
        """The load tester's options that go with `security(row)`."""
        args = []
        if row.tls:
            args += ["--cafile", str(self.tls.cafile)]
        if row.passwords:
            args += ["--credentials", str(self.files_for(row).credentials)]
        return args

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def run_loadtest(
    row: Row,
    target: Target,
    quick: bool,
    duration_limit: float,
    mosquitto: str | None,
    secrets: Secrets | None = None,
    generator: Generator = PYTHON,
) -> dict[str, Any]:
    """One run: a fresh broker, one load test by `generator`, the broker stopped."""
    record: dict[str, Any] = {
        "row": row.name,
        "target": target.label,
        "generator": generator.name,
        "result": None,
    }
    if (row.tls or row.passwords) and secrets is None:
        record["error"] = "no certificates or password file for this row"
        return record
    security = secrets.security(row) if secrets is not None else PLAIN
    broker = BrokerProcess(target.kind, list(target.args), security, row.mosquitto_nodelay)
    try:
        broker.start(mosquitto)
    except BrokerError as error:
        record["error"] = str(error)
        return record
    cmd = generator.command(
        [
            *loadtest_args(row, quick, secrets),
            "--port",
            str(broker.port),
            "--broker-pid",
            str(broker.pid),
            "--duration-limit",
            str(duration_limit),
            "--json",
        ]
    )
    record["command"] = " ".join(cmd[1:] if generator is PYTHON else cmd)
    try:
        broker_cpu = cpu_seconds(broker.pid)
        processes_cpu = cpu_by_process(broker.pid)
        generator_cpu = children_cpu_seconds()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_limit + 60)
        generator_cpu = children_cpu_seconds() - generator_cpu
        broker_cpu = cpu_seconds(broker.pid) - broker_cpu
        processes_after = cpu_by_process(broker.pid)
        record["exit_code"] = proc.returncode
        lines = proc.stdout.strip().splitlines()
        if lines:
            result = record["result"] = json.loads(lines[-1])
            counted, unit = row.per
            done = result.get(counted) or 0
            if done:
                result[f"broker_cpu_us_per_{unit}"] = broker_cpu * 1e6 / done
                result[f"generator_cpu_us_per_{unit}"] = generator_cpu * 1e6 / done
                if processes_after:  # flockmq: by process (scripts/scaling_model.py)
                    result[f"process_cpu_us_per_{unit}"] = {
                        name: (after - processes_cpu.get(name, 0.0)) * 1e6 / done
                        for name, after in processes_after.items()
                    }
            cores = min(result.get("processes") or 0, os.cpu_count() or 1)
            available = (result.get("duration_s") or 0) * cores
            if generator_cpu > 0 and available > 0:
                result["generator_headroom"] = available / generator_cpu
        else:
            record["error"] = proc.stderr.strip()[-2000:] or "no output"
    except subprocess.TimeoutExpired:
        record["error"] = "load tester did not finish in time"
    except json.JSONDecodeError as error:
        record["error"] = f"unreadable output: {error}"
    finally:
        broker.stop()
    return record


def loadtest_args(row: Row, quick: bool, secrets: Secrets | None) -> list[str]:
    """The scenario and options of `row` for either generator, without the
    broker's port and pid."""
    return [
        *row.args,
        *(row.quick if quick else ()),
        *(secrets.loadtest_args(row) if secrets is not None else ()),
    ]


def generators_for(
    rows: list[Row], wanted: str, quick: bool, secrets: Secrets | None
) -> dict[str, Generator]:
    """The generator of each row: the native one where it was built and runs
    the row, else loadtest.py; every fallback is printed with its reason."""
    binary = None
    if wanted == "native":
        binary, why = build_native()
        if binary is None:
            print(
                f"bench: native generator unavailable ({why}); using loadtest.py", file=sys.stderr
            )
    chosen = {}
    for row in rows:
        generator, why = choose(wanted, loadtest_args(row, quick, secrets), binary)
        if wanted == "native" and binary is not None and generator is PYTHON:
            print(
                f"bench: {row.name}: the native generator cannot run it ({why}); using loadtest.py",
                file=sys.stderr,
            )
        chosen[row.name] = generator
    return chosen


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants alive now."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def cpu_by_process(pid: int) -> dict[str, float]:
    """User + system CPU of each flockmq child ("router/0", "acceptor/1"...),
    by its title (`flockmq router 0`) or name (`router-0`), in either spawn
    mode (flockmq.app.proctitle.role_of); empty for another broker."""
    out: dict[str, float] = {}
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return out
    for child in children:
        try:
            name = broker_memory.label(child.cmdline(), child.name())
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        role, _, index = name.partition(" ")
        if role in ROLES and index.isdigit():
            out[f"{role}/{index}"] = times.user + times.system
    return out


def children_cpu_seconds() -> float:
    """CPU of this process's children that have been waited for (the load
    tester and its client processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def describe(record: dict[str, Any], row: Row) -> str:
    result = record.get("result")
    if result is None:
        return f"error: {record.get('error', '?')[:200]}"
    parts = [f"{m.label} {fmt(result.get(m.key))}" for m in row.metrics]
    if row.checks_delivery:
        parts.append(f"lost {result['lost']} dup {result['dup']} ooo {result['out_of_order']}")
    parts.append(f"exit {record.get('exit_code')} ({result['duration_s']:.1f}s)")
    parts.append(f"generator {record.get('generator', 'python')}")
    if generator_bound(result.get(HEADROOM.key)):
        parts.append("GENERATOR-BOUND?")
    return ", ".join(parts)


def generator_bound(headroom: float | None) -> bool:
    """The generator could not have gone 1.5x faster: the figure may be its own."""
    return headroom is not None and headroom < GENERATOR_BOUND


def median_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r["result"][key] for r in records if r["result"] and r["result"].get(key) is not None]
    return statistics.median(values) if values else None


def delivery_sums(records: list[dict[str, Any]]) -> str:
    done = [r["result"] for r in records if r["result"]]
    if not done:
        return "-"
    return "/".join(str(sum(d[k] for d in done)) for k in ("lost", "dup", "out_of_order"))


def summarize(rows: list[Row], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (row, metric): the medians, the ratio and the QoS sums."""
    lines = []
    for row in rows:
        a, b = row.targets
        runs_a = [r for r in records if r["row"] == row.name and r["target"] == a.label]
        runs_b = [r for r in records if r["row"] == row.name and r["target"] == b.label]
        for metric in row.metrics:
            med_a, med_b = median_of(runs_a, metric.key), median_of(runs_b, metric.key)
            ratio = med_a / med_b if med_a is not None and med_b else None
            lines.append(
                {
                    "row": row.name,
                    "title": row.title,
                    "metric": metric.label,
                    "higher_is_better": metric.higher_is_better,
                    "a": a.label,
                    "b": b.label,
                    "median_a": med_a,
                    "median_b": med_b,
                    "ratio": ratio,
                    "lost_dup_ooo_a": delivery_sums(runs_a) if row.checks_delivery else "-",
                    "lost_dup_ooo_b": delivery_sums(runs_b) if row.checks_delivery else "-",
                    "failed_runs": sum(
                        1 for r in runs_a + runs_b if r["result"] is None or r.get("exit_code")
                    ),
                    "generators": sorted({r.get("generator", "python") for r in runs_a + runs_b}),
                }
            )
    return lines


# (row, row it is compared with): flockmq's own figures, same run, same metric
COSTS = (
    ("fanin-q1-persistent", "fanin-q1", "persistent / clean sessions"),
    ("pairs-q1-persistent", "pairs-q1", "persistent / clean sessions"),
    ("pairs-q1-power", "pairs-q1-persistent", "durability power / process"),
)


def durability_costs(lines: list[dict[str, Any]]) -> list[tuple[str, str, float, float, float]]:
    """(row, what, flockmq median, flockmq median of the row compared with,
    ratio) for every pair in COSTS that this run measured."""
    medians = {ln["row"]: ln["median_a"] for ln in lines if ln["metric"] == DELIVERIES.label}
    out = []
    for row, base, what in COSTS:
        value, reference = medians.get(row), medians.get(base)
        if value is not None and reference:
            out.append((row, what, value, reference, value / reference))
    return out


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) < 100 else human(value)


def print_table(lines: list[dict[str, Any]]) -> None:
    header = (
        f"{'row':<19} {'metric':<23} {'flockmq':>9} {'other':>9} {'ratio':>6}  "
        f"{'lost/dup/ooo':>13} {'(other)':>13} {'other is':<12}"
    )
    print(header)
    print("-" * len(header))
    for ln in lines:
        ratio = "-" if ln["ratio"] is None else f"{ln['ratio']:.2f}"
        mark = "" if ln["higher_is_better"] else " (lower is better)"
        if ln["metric"] == HEADROOM.label and (
            generator_bound(ln["median_a"]) or generator_bound(ln["median_b"])
        ):
            mark = f" GENERATOR-BOUND? (under {GENERATOR_BOUND}x)"
        print(
            f"{ln['row']:<19} {ln['metric']:<23} {fmt(ln['median_a']):>9} "
            f"{fmt(ln['median_b']):>9} {ratio:>6}  {ln['lost_dup_ooo_a']:>13} "
            f"{ln['lost_dup_ooo_b']:>13} {ln['b']:<12}{mark}"
        )
    print("ratio = flockmq / other (medians); lost/dup/ooo summed over all runs")
    used: dict[str, list[str]] = {}
    for ln in lines:
        for name in ln.get("generators", ()):
            if ln["row"] not in used.setdefault(name, []):
                used[name].append(ln["row"])
    for name, rows in sorted(used.items()):
        label = "native (build/bench/mqttload)" if name == "native" else "python (loadtest.py)"
        print(f"generator {label}: {', '.join(rows)}")
    print(
        "generator headroom = CPU its processes could have used (a core each, at most the"
        " machine's) / CPU they"
        f" used; under {GENERATOR_BOUND}x a row's figure may be the generator's"
    )
    costs = durability_costs(lines)
    if costs:
        print("\nthe cost of durability (flockmq against itself, deliveries/s):")
        for row, what, value, reference, cost in costs:
            print(f"  {row:<20} {what:<28} {fmt(value):>9} / {fmt(reference):>9} = {cost:.2f}")


def draw_chart(path: Path, lines: list[dict[str, Any]]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is missing (pip install -e '.[bench]'); no chart", file=sys.stderr)
        return False
    shown = [ln for ln in lines if ln["ratio"] is not None]
    if not shown:
        return False
    labels = [f"{ln['row']}: {ln['metric']}\n(vs {ln['b']})" for ln in shown]
    ratios = [ln["ratio"] for ln in shown]
    colors = [
        "tab:green" if (r >= 1) == ln["higher_is_better"] else "tab:red"
        for r, ln in zip(ratios, shown, strict=True)
    ]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(shown) + 1.5))
    # Bars grow from 1.0 (parity) to the ratio, left for below, right for above.
    ax.barh(range(len(shown)), [r - 1 for r in ratios], left=1.0, color=colors)
    ax.set_xscale("log")  # 0.5x and 2x are the same distance from 1
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    for i, ln in enumerate(shown):
        ax.text(
            max(ratios[i], 1.0),
            i,
            f"  {fmt(ln['median_a'])} / {fmt(ln['median_b'])}",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("flockmq / other (medians); green = flockmq better")
    ax.set_title("flockmq benchmark")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def run_codec_bench(quick: bool) -> dict[str, Any] | None:
    """scripts/bench_codec.py's last JSON line, or None when it is absent or fails."""
    if not BENCH_CODEC.exists():
        print("bench: scripts/bench_codec.py is missing; codec benchmark skipped", file=sys.stderr)
        return None
    cmd = [sys.executable, str(BENCH_CODEC)]
    if quick:
        cmd += ["--packets", "20000", "--repeat", "1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise ValueError(proc.stderr.strip()[-500:] or "no output")
        print("\ncodec micro-benchmark (scripts/bench_codec.py):")
        print("\n".join(lines[:-1]))
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    except (subprocess.TimeoutExpired, ValueError) as error:
        print(f"bench: codec benchmark failed: {error}", file=sys.stderr)
        return None


def run_bus_bench(quick: bool) -> dict[str, Any] | None:
    """scripts/bench_bus.py's JSON line (one inter-process hop, no MQTT), or None."""
    cmd = [sys.executable, str(BENCH_BUS)]
    if quick:
        cmd += ["--count", "2000"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise ValueError(proc.stderr.strip()[-500:] or "no output")
        print("\nbus round trips between two processes (scripts/bench_bus.py):")
        print("\n".join(lines[:-1]))
        result: dict[str, Any] = json.loads(lines[-1])
        return result
    except (subprocess.TimeoutExpired, ValueError) as error:
        print(f"bench: bus benchmark failed: {error}", file=sys.stderr)
        return None


def cluster_unavailable() -> str | None:
    """Why the cluster row cannot run here, or None (scripts/bench_cluster.py)."""
    try:
        import bench_cluster
    except ImportError as error:  # its test helpers need the [dev] extras
        return f"scripts/bench_cluster.py cannot be imported ({error})"
    return bench_cluster.unavailable()


def run_cluster(plan: cluster_rows.Plan, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """The cluster row, measured by scripts/bench_cluster.py, printed; the
    raw file's "cluster" entry and True if a run failed or broke a QoS
    guarantee. A skipped row is recorded with its reason."""
    if not plan.run:
        return {"skipped": plan.skipped or "not in --only"}, False
    import bench_cluster
    import pytest

    from tests.cluster.netns import NetnsError

    print(f"\n{cluster_rows.WHAT}", flush=True)
    counts = list(cluster_rows.HOSTS)
    try:
        results, broken = bench_cluster.measure(counts, args.runs, args.quick)
    except (NetnsError, pytest.skip.Exception) as error:
        # tests/postgres.py skips (a BaseException) when its server will not start
        print(f"bench: cluster row failed: {error}", file=sys.stderr)
        return {"error": str(error)}, True
    bench_cluster.print_table(results, counts)
    print(
        f"medians of {args.runs} run(s) per cell; the hosts share this machine's"
        f" {os.cpu_count()} cores: a hop's overhead, not scaling"
    )
    return {"what": cluster_rows.WHAT, "runs": cluster_rows.records(results)}, broken


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="flockmq vs Mosquitto benchmark")
    parser.add_argument("--runs", type=int, default=3, help="rounds per row and broker")
    parser.add_argument("--quick", action="store_true", help="small counts, 1 run")
    parser.add_argument(
        "--only",
        default="",
        help=f"rows, comma-separated: {row_names()}, {cluster_rows.NAME} (root: namespaces)",
    )
    parser.add_argument("--chart", default="build/bench/bench.png", help="PNG of the table")
    parser.add_argument("--raw", default="build/bench/bench-runs.json", help="every run, JSON")
    parser.add_argument("--duration-limit", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--no-mosquitto", action="store_true", help="flockmq rows only")
    parser.add_argument(
        "--no-codec", action="store_true", help="skip the codec and bus micro-benchmarks"
    )
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="native",
        help="load generator: native (C, built into build/bench/) or python (loadtest.py);"
        " a row the native one cannot run uses loadtest.py",
    )
    args = parser.parse_args(argv)
    if args.quick and args.runs == 3:
        args.runs = 1
    return args


def row_names() -> str:
    return ", ".join(r.name for r in ROWS)


def run_rows(
    rows: list[Row], args: argparse.Namespace, mosquitto: str | None, secrets: Secrets | None
) -> list[dict[str, Any]]:
    """Every run of every row, --runs rounds, progress on stderr."""

    def targets_of(row: Row, run: int) -> tuple[Target, ...]:
        # Alternate the brokers, and which goes first, so that drift in the
        # machine's state does not favour one.
        order = row.targets if run % 2 == 0 else row.targets[::-1]
        return tuple(t for t in order if t is not MOSQUITTO or mosquitto is not None)

    generators = generators_for(rows, args.generator, args.quick, secrets)
    records: list[dict[str, Any]] = []
    total = sum(len(targets_of(row, 0)) for row in rows) * args.runs
    for run in range(args.runs):
        for row in rows:
            for target in targets_of(row, run):
                record = run_loadtest(
                    row,
                    target,
                    args.quick,
                    args.duration_limit,
                    mosquitto,
                    secrets,
                    generators[row.name],
                )
                record["run"] = run
                records.append(record)
                print(
                    f"[{len(records)}/{total}] {row.name} {target.label} run {run + 1}: "
                    f"{describe(record, row)}",
                    file=sys.stderr,
                    flush=True,
                )
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = wanted - {r.name for r in ROWS} - {cluster_rows.NAME}
    if unknown:
        print(
            f"bench: unknown row(s) {sorted(unknown)}; rows: {row_names()}, {cluster_rows.NAME}",
            file=sys.stderr,
        )
        return 2
    rows = [r for r in ROWS if not wanted or r.name in wanted]
    cluster_plan = cluster_rows.plan(wanted, cluster_unavailable())
    if cluster_plan.skipped:
        print(f"bench: {cluster_plan.skipped}", file=sys.stderr)
    mosquitto = None if args.no_mosquitto or not rows else find_mosquitto()
    if mosquitto is None and rows:
        print("bench: no mosquitto; measuring flockmq only", file=sys.stderr)

    secrets = None
    if any(row.tls or row.passwords for row in rows):
        try:
            secrets = Secrets.make(any(row.unique_users for row in rows))
        except ImportError as error:  # trustme: pip install -e '.[test]'
            print(f"bench: no certificates ({error}); TLS rows fail", file=sys.stderr)
    started = time.time()
    try:
        records = run_rows(rows, args, mosquitto, secrets) if rows else []
    finally:
        if secrets is not None:
            secrets.remove()
    lines = summarize(rows, records)
    if rows:
        print()
        print_table(lines)
    cluster, cluster_broken = run_cluster(cluster_plan, args)
    codec = None if args.no_codec or not rows else run_codec_bench(args.quick)
    bus = None if args.no_codec or not rows else run_bus_bench(args.quick)
    raw = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "mosquitto": mosquitto,
        "quick": args.quick,
        "runs": records,
        "table": lines,
        "durability_costs": durability_costs(lines),
        "codec": codec,
        "bus": bus,
        "cluster": cluster,
    }
    raw_path = Path(args.raw)
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(json.dumps(raw, indent=1))
    print(f"\nraw runs: {raw_path}")
    if args.chart and draw_chart(Path(args.chart), lines):
        print(f"chart: {args.chart}")
    broken = any(r.get("exit_code") or r["result"] is None for r in records)
    return 1 if broken or cluster_broken else 0


if __name__ == "__main__":
    sys.exit(main())
