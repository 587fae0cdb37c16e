"""`flockmq status` without I/O: two samples of every process's control
snapshot (flockmq/control.py) in, a report out (rows, totals, advice), and
the report as a table. Pure functions, so the advice is tested with figures
in and advice out (tests/unit/flockmq/test_status.py).

Figures per process: CPU % (of one core) and messages per second come from
two samples (each process's own clock and CPU seconds); the rest is the
second sample's. "Messages" are what a process handles: for an acceptor the
PUBLISH packets from and to its clients, for the router and the workers the
envelopes in and out on the bus; an auth process's hook figures
(flockmq/app/hook_figures.py) follow the table. `queued` is the bytes on
this process's pipes to its peers (flockmq/bus.py): sent and not yet
handled by the peer, plus the backlog waiting to be sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .hook_figures import hook_figures, render_hooks

Row = dict[str, Any]
Report = dict[str, Any]

ORDER = {"supervisor": 0, "router": 1, "worker": 2, "acceptor": 3, "auth": 4}
# per role: the counters (or gauges) that are its messages in and out
MESSAGES = {
    "acceptor": ("publishes_received", "publishes_sent"),
    "router": ("envelopes_in", "envelopes_out"),
    "worker": ("envelopes_in", "envelopes_out"),
}
# advice thresholds
HOT_CPU = 80.0  # % of a core: a role this busy is what limits throughput
COOL_CPU = 40.0  # % of a core: a role this idle can give up a process
ROUTER_HOT_CPU = 90.0
SHARE_MIN_COUNT = 20  # sessions or connections before their spread matters
# one process holds more than its fair share by this factor, or by this
# margin, whichever is less (of 2 shards, 70 %; of 4, 45 %; of 8, 25 %)
SHARE_FACTOR = 2.0
SHARE_MARGIN = 0.2
QUEUE_FULL = 0.5  # a pipe holding this part of its byte limit


@dataclass(frozen=True)
class Sample:
    """When it was taken, and per process: role, index, pid, restarts and
    its snapshot (None: no answer)."""

    time: float
    rows: list[Row]


def _figure(snapshot: Row, name: str) -> int:
    for table in ("gauges", "counters"):
        values = snapshot.get(table)
        if isinstance(values, dict) and isinstance(values.get(name), int):
            return int(values[name])
    value = snapshot.get(name)
    return int(value) if isinstance(value, int) else 0


def _rate(before: Row | None, after: Row, name: str, seconds: float) -> float | None:
    if before is None or seconds <= 0:
        return None
    if name == "cpu_seconds":
        delta = float(after.get("cpu_seconds", 0.0)) - float(before.get("cpu_seconds", 0.0))
    else:
        delta = _figure(after, name) - _figure(before, name)
    return max(0.0, delta) / seconds


def process_row(before: Row | None, after: Row) -> Row:
    """One process's figures from its two samples' rows."""
    role, snap = after["role"], after.get("snapshot")
    row: Row = {
        "role": role,
        "index": after["index"],
        "pid": after.get("pid"),
        "restarts": after.get("restarts") or 0,
        "answered": snap is not None,
    }
    if snap is None:
        return row
    prev = before.get("snapshot") if before is not None else None
    if prev is not None and prev.get("pid") != snap.get("pid"):
        prev = None  # restarted between the samples: no rate
    seconds = float(snap["time"]) - float(prev["time"]) if prev is not None else 0.0
    cpu = _rate(prev, snap, "cpu_seconds", seconds)
    pipes = snap.get("pipes") if isinstance(snap.get("pipes"), dict) else {}
    queued = {
        peer: int(p.get("in_flight", 0)) + int(p.get("backlog", 0)) for peer, p in pipes.items()
    }
    msg_in, msg_out = MESSAGES.get(role, ("envelopes_in", "envelopes_out"))
    row.update(
        cpu_percent=None if cpu is None else round(cpu * 100, 1),
        rss_bytes=int(snap.get("rss_bytes", 0)),
        pss_bytes=int(snap.get("pss_bytes", 0)),
        connections=_figure(snap, "clients_connected"),
        sessions=_figure(snap, "sessions"),
        subscriptions=_figure(snap, "subscriptions"),
        messages_in_per_s=_round(_rate(prev, snap, msg_in, seconds)),
        messages_out_per_s=_round(_rate(prev, snap, msg_out, seconds)),
        queued_bytes=sum(queued.values()),
        pipes=queued,
        pipe_limit_bytes=int(snap.get("pipe_bytes", 0)),
    )
    if role == "auth":
        row["hook"] = hook_figures(prev, snap, seconds)
    gauges = snap.get("gauges")
    if role == "worker" and isinstance(gauges, dict) and "shard_standby" in gauges:
        # PostgreSQL store: does this worker hold its shard's lock (workers/ownership.py)
        row["standby"] = bool(gauges["shard_standby"])
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def build_report(before: Sample, after: Sample, cpu_count: int) -> Report:
    """The report `flockmq status --json` prints and the dashboard polls."""
    earlier = {(r["role"], r["index"]): r for r in before.rows}
    rows = [process_row(earlier.get((r["role"], r["index"])), r) for r in after.rows]
    rows.sort(key=lambda r: (ORDER.get(r["role"], 9), r["role"], r["index"]))
    report: Report = {
        "time": after.time,
        "interval": round(after.time - before.time, 3),
        "cpu_count": cpu_count,
        "processes": rows,
        "totals": totals(rows),
    }
    report["advice"] = advise(rows, cpu_count)
    return report


def totals(rows: list[Row]) -> Row:
    """Sums over the processes that answered. Messages in and out are the
    acceptors' (clients' PUBLISH packets): the envelopes inside the broker
    would count each message again at every hop."""
    answered = [r for r in rows if r["answered"]]
    acceptors = [r for r in answered if r["role"] == "acceptor"]

    def total(name: str, of: list[Row]) -> float:
        return round(sum(r.get(name) or 0 for r in of), 1)

    return {
        "processes": len(rows),
        "answered": len(answered),
        "cpu_percent": float(total("cpu_percent", answered)),
        "rss_bytes": int(total("rss_bytes", answered)),
        "pss_bytes": int(total("pss_bytes", answered)),
        "connections": int(total("connections", answered)),
        "sessions": int(total("sessions", answered)),
        "subscriptions": int(total("subscriptions", answered)),
        "messages_in_per_s": float(total("messages_in_per_s", acceptors)),
        "messages_out_per_s": float(total("messages_out_per_s", acceptors)),
        "queued_bytes": int(total("queued_bytes", answered)),
        "restarts": int(total("restarts", rows)),
    }


# --- advice ------------------------------------------------------------------------------


def advise(rows: list[Row], cpu_count: int) -> list[str]:
    """What the operator could change, each with the figures behind it; a
    single "no advice: ..." line with the figures checked when all is well."""
    advice = [
        *_missing(rows),
        *_restarts(rows),
        *_cpu_balance(rows),
        *_spread(rows, "worker", "sessions", "session shard"),
        *_spread(rows, "acceptor", "connections", "acceptor"),
        *_queues(rows),
    ]
    if advice:
        return advice
    return [_all_well(rows, cpu_count)]


def _name(row: Row) -> str:
    standby = " (standby)" if row.get("standby") else ""
    return f"{row['role']} {row['index']}{standby}"


def _missing(rows: list[Row]) -> list[str]:
    return [
        f"{_name(r)} (pid {r.get('pid') or '?'}) did not answer: it may be busy, "
        "starting or stopped (see the log)"
        for r in rows
        if not r["answered"]
    ]


def _restarts(rows: list[Row]) -> list[str]:
    return [
        f"{_name(r)} restarted {r['restarts']} time{'s' if r['restarts'] != 1 else ''}: "
        "the log says why"
        for r in rows
        if r.get("restarts")
    ]


def _mean_cpu(rows: list[Row], role: str) -> tuple[float, int] | None:
    figures = [
        r["cpu_percent"] for r in rows if r["role"] == role and r.get("cpu_percent") is not None
    ]
    if not figures:
        return None
    return sum(figures) / len(figures), len(figures)


def _cpu_balance(rows: list[Row]) -> list[str]:
    out = []
    acceptors, workers = _mean_cpu(rows, "acceptor"), _mean_cpu(rows, "worker")
    if acceptors is not None and workers is not None:
        (a_cpu, a_n), (w_cpu, w_n) = acceptors, workers
        figures = f"acceptors at {a_cpu:.0f} % CPU, workers at {w_cpu:.0f} %"
        if a_cpu >= HOT_CPU and w_cpu <= COOL_CPU and w_n > 1:
            out.append(
                f"{figures}: move one worker to an acceptor "
                f"(--acceptors {a_n + 1} --workers {w_n - 1})"
            )
        elif w_cpu >= HOT_CPU and a_cpu <= COOL_CPU and a_n > 1:
            out.append(
                f"{figures}: move one acceptor to a worker "
                f"(--acceptors {a_n - 1} --workers {w_n + 1})"
            )
    router = _mean_cpu(rows, "router")
    if router is not None and router[0] >= ROUTER_HOT_CPU:
        r_cpu, r_n = router
        what = "the router" if r_n == 1 else f"the {r_n} routers"
        out.append(
            f"{what} at {r_cpu:.0f} % CPU {'is' if r_n == 1 else 'are'} the limit: "
            "they match every publish, so more acceptors or workers will not add "
            f"throughput (--routers {r_n + 1}, with at least as many acceptors, or fewer "
            "distinct topics or subscriptions will)"
        )
    return out


def _spread(rows: list[Row], role: str, figure: str, what: str) -> list[str]:
    """One process holding far more than its share of `figure`."""
    of_role = [r for r in rows if r["role"] == role and r["answered"]]
    whole = sum(r.get(figure) or 0 for r in of_role)
    if len(of_role) < 2 or whole < SHARE_MIN_COUNT:
        return []
    top = max(of_role, key=lambda r: r.get(figure) or 0)
    share, fair = (top.get(figure) or 0) / whole, 1 / len(of_role)
    if share + 1e-9 < min(fair * SHARE_FACTOR, fair + SHARE_MARGIN):
        return []
    return [
        f"one {what} ({_name(top)}) holds {share * 100:.0f} % of {figure} "
        f"({top.get(figure)} of {whole}, fair share {fair * 100:.0f} %)"
    ]


def _queues(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        limit = r.get("pipe_limit_bytes") or 0
        for peer, queued in (r.get("pipes") or {}).items():
            if limit and queued >= QUEUE_FULL * limit:
                out.append(
                    f"{_name(r)}'s pipe to {peer} holds {format_bytes(queued)} "
                    f"(limit {format_bytes(limit)}): {peer} is not keeping up"
                )
    return out


def _all_well(rows: list[Row], cpu_count: int) -> str:
    cpus = [r["cpu_percent"] for r in rows if r.get("cpu_percent") is not None]
    busiest = max(cpus) if cpus else 0.0
    queued = sum(r.get("queued_bytes") or 0 for r in rows)
    return (
        f"no advice: every process answered, the busiest at {busiest:.0f} % CPU "
        f"({cpu_count} cores), {format_bytes(queued)} queued on the pipes, no restarts"
    )


# --- the table ---------------------------------------------------------------------------

COLUMNS = (
    ("PROCESS", "name", "<"),
    ("PID", "pid", ">"),
    ("CPU%", "cpu_percent", ">"),
    ("RSS", "rss_bytes", ">"),
    ("PSS", "pss_bytes", ">"),
    ("CONNS", "connections", ">"),
    ("SESSIONS", "sessions", ">"),
    ("SUBS", "subscriptions", ">"),
    ("IN/s", "messages_in_per_s", ">"),
    ("OUT/s", "messages_out_per_s", ">"),
    ("QUEUED", "queued_bytes", ">"),
    ("RESTARTS", "restarts", ">"),
)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # not reached


def _cell(row: Row, key: str) -> str:
    value = row.get(key)
    if key == "name":
        text = _name(row)
    elif key == "pid":
        text = "?" if value is None else str(value)
    elif not row.get("answered", True) and key != "restarts":
        text = "no answer" if key == "cpu_percent" else "-"
    elif value is None:
        text = "-"
    elif key.endswith("bytes"):
        text = format_bytes(value)
    else:
        text = f"{value:.1f}" if isinstance(value, float) else str(value)
    return text


def _total_cells(report: Report) -> list[str]:
    row = {**report["totals"], "answered": True}
    return ["total", "", *(_cell(row, key) for _title, key, _align in COLUMNS[2:])]


def render_table(report: Report) -> str:
    """The report as `flockmq status` prints it: the table, totals, advice."""
    cells = [[_cell(r, key) for _title, key, _align in COLUMNS] for r in report["processes"]]
    cells.append(_total_cells(report))
    widths = [
        max(len(title), *(len(c[i]) for c in cells)) for i, (title, _k, _a) in enumerate(COLUMNS)
    ]

    def line(values: list[str]) -> str:
        parts = [
            f"{v:{align}{w}}" for v, w, (_t, _k, align) in zip(values, widths, COLUMNS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line([title for title, _k, _a in COLUMNS])]
    out.extend(line(c) for c in cells[:-1])
    out.append(line(["-" * w for w in widths]))
    out.append(line(cells[-1]))
    out.append("")
    out.append(
        "IN/s, OUT/s: PUBLISH packets for acceptors and the total, envelopes for the "
        f"others. CPU%: of one core, over {report['interval']:.1f} s. "
        "QUEUED: bytes on the process's pipes. PSS: resident memory with the pages "
        "the processes share counted once (the total is the broker's memory; RSS "
        "summed counts shared pages once per process)."
    )
    hooks = render_hooks(report["processes"])
    if hooks:
        out.append("")
        out.append("auth hooks:")
        out.extend(hooks)
    out.append("")
    out.append("advice:")
    out.extend(f"  - {a}" for a in report["advice"])
    return "\n".join(out)
