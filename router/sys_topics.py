"""Mosquitto's `$SYS/broker/...` topics for the whole broker (issue 13), from
the counters every process publishes for itself.

Each process publishes its own counters as retained
`$SYS/broker/<role>/<index>/<name>` messages (flockmq/sysstats.py). The router
sees them all go by; `SysTopics` keeps the last value of each, and every
interval computes the topics Mosquitto publishes, with Mosquitto's names and
meanings (mosquitto(8), "BROKER STATUS"), so that the dashboards and exporters
written for Mosquitto read flockmq unchanged:

- `clients/connected` (acceptors' connected clients), `clients/disconnected`
  (persistent sessions with no connection, from the workers), `clients/total`
  (both), `clients/maximum` (the most connected at once since start);
- `messages/received`, `messages/sent` (MQTT packets of every type),
  `publish/messages/received`, `publish/messages/sent`, `bytes/received`,
  `bytes/sent` (all since start, summed over the acceptors);
- `load/...`: Mosquitto's moving averages per minute over 1, 5 and 15 minutes
  of `messages/received`, `messages/sent`, `publish/received`, `publish/sent`,
  `bytes/received`, `bytes/sent`, `connections` (CONNECTs accepted) and
  `sockets` (TCP connections opened): each new value is
  `old * e + rate_per_minute * (1 - e)` with `e = exp(-elapsed / period)`,
  as in Mosquitto's sys_tree.c;
- `subscriptions/count`, `retained messages/count`, `store/messages/count`
  (messages queued or in flight for sessions), `uptime` ("N seconds"),
  `version` ("flockmq version X").

Memory: one value per (role, index, counter name) that the processes publish:
bounded by the processes and the counter names in the code. A `$SYS` topic
that does not have the per-process shape, or a value that is not a number, is
ignored (acceptors refuse client publishes to `$SYS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PREFIX = "$SYS/broker/"
ROLES = ("acceptor", "worker", "router", "auth")
PERIODS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))
# the per-process counters each broker-wide figure is the sum of
SUMS = {
    "clients_connected": "acceptor",
    "connects": "acceptor",
    "connections_accepted": "acceptor",
    "packets_received": "acceptor",
    "packets_sent": "acceptor",
    "publishes_received": "acceptor",
    "publishes_sent": "acceptor",
    "bytes_received": "acceptor",
    "bytes_sent": "acceptor",
    "sessions_offline": "worker",
    "subscriptions": "worker",
    "messages_stored": "worker",
    "retained_messages": "router",
}
# load series: Mosquitto's name -> the summed counter it is the rate of
LOADS = {
    "messages/received": "packets_received",
    "messages/sent": "packets_sent",
    "publish/received": "publishes_received",
    "publish/sent": "publishes_sent",
    "bytes/received": "bytes_received",
    "bytes/sent": "bytes_sent",
    "connections": "connects",
    "sockets": "connections_accepted",
}
# values now, not totals since start: a process that restarts reports them
# afresh; the others are totals, carried over such a restart (see observe)
GAUGES = frozenset(
    {
        "clients_connected",
        "sessions_offline",
        "subscriptions",
        "messages_stored",
        "retained_messages",
        # a worker on the PostgreSQL store: 1 while a standby (workers/ownership.py)
        "shard_standby",
        "shard_epoch",
    }
)
# every router holds the whole retained set (Config.routers): the broker's
# figure is one router's, not their sum
ONE_PER_ROUTER = frozenset({"retained_messages"})
MAX_VALUE_BYTES = 32  # a counter's text; longer is not one of ours
# every process's every counter, for the metrics endpoint (router/metrics.py):
# bounded by processes and the counter names in the code; past this many
# entries new ones are not kept (counted in `dropped`)
MAX_PROCESS_VALUES = 100_000
MAX_INDEX = 4096


@dataclass
class SysTopics:
    version: str
    started: float | None = None  # the first `topics` call's time, if not given
    values: dict[tuple[str, int, str], int] = field(default_factory=dict)
    # what restarted processes had counted before, per (role, index, name)
    carried: dict[tuple[str, int, str], int] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)
    last_totals: dict[str, int] = field(default_factory=dict)
    last_update: float | None = None
    # (role, index, name) -> value, for every counter any process publishes
    process_values: dict[tuple[str, int, str], int] = field(default_factory=dict)
    dropped: int = 0
    maximum_connected: int = 0
    # A restarted router (RouterCore.start): every process sends it all its
    # counters again, totals since that process started. A counter seen for
    # the first time is then where it stands, not traffic since the last
    # interval: it moves the load figures from its next value on.
    resumed: bool = False

    def observe(self, topic: str, payload: bytes) -> bool:
        """A retained `$SYS/broker/<role>/<index>/<name>` publish went by:
        keep its value. False when it is not one (nothing kept)."""
        parsed = _parse(topic, payload)
        if parsed is None:
            return False
        key, value = parsed
        if key not in self.process_values and len(self.process_values) >= MAX_PROCESS_VALUES:
            self.dropped += 1
            return False
        self.process_values[key] = value
        role, _index, name = key
        if SUMS.get(name) == role:
            before = self.values.get(key)
            if before is not None and value < before and name not in GAUGES:
                self.carried[key] = self.carried.get(key, 0) + before  # it restarted
            elif before is None and self.resumed and name in self.last_totals:
                self.last_totals[name] += value  # counted before this router: no rate
            self.values[key] = value
        return True

    def total(self, name: str) -> int:
        if name in ONE_PER_ROUTER:
            return max((v for (_r, _i, n), v in self.values.items() if n == name), default=0)
        counted = sum(v for (_role, _index, n), v in self.values.items() if n == name)
        return counted + sum(v for (_role, _index, n), v in self.carried.items() if n == name)

    def topics(self, now: float) -> list[tuple[str, bytes]]:
        """Every Mosquitto topic with its value now (published retained)."""
        if self.started is None:
            self.started = now
        totals = {name: self.total(name) for name in SUMS}
        connected = totals["clients_connected"]
        self.maximum_connected = max(self.maximum_connected, connected)
        out = {
            "clients/connected": connected,
            "clients/disconnected": totals["sessions_offline"],
            "clients/total": connected + totals["sessions_offline"],
            "clients/maximum": self.maximum_connected,
            "messages/received": totals["packets_received"],
            "messages/sent": totals["packets_sent"],
            "publish/messages/received": totals["publishes_received"],
            "publish/messages/sent": totals["publishes_sent"],
            "bytes/received": totals["bytes_received"],
            "bytes/sent": totals["bytes_sent"],
            "subscriptions/count": totals["subscriptions"],
            "retained messages/count": totals["retained_messages"],
            "store/messages/count": totals["messages_stored"],
        }
        result = [(PREFIX + name, str(value).encode()) for name, value in out.items()]
        self._update_loads(totals, now)
        result.extend(
            (f"{PREFIX}load/{name}", f"{value:.2f}".encode()) for name, value in self.loads.items()
        )
        uptime = max(0, int(now - self.started))
        result.append((PREFIX + "uptime", f"{uptime} seconds".encode()))
        result.append((PREFIX + "version", f"flockmq version {self.version}".encode()))
        return result

    def _update_loads(self, totals: dict[str, int], now: float) -> None:
        last = self.last_update
        self.last_update = now
        if last is None or now <= last:
            for series in LOADS:
                for period, _seconds in PERIODS:
                    self.loads.setdefault(f"{series}/{period}", 0.0)
            self.last_totals = {name: totals[name] for name in LOADS.values()}
            return
        elapsed = now - last
        for series, counter in LOADS.items():
            # a process that restarted counts from 0 again: no negative rate
            delta = max(0, totals[counter] - self.last_totals.get(counter, 0))
            per_minute = delta * 60.0 / elapsed
            for period, seconds in PERIODS:
                key = f"{series}/{period}"
                decay = math.exp(-elapsed / seconds)
                self.loads[key] = self.loads.get(key, 0.0) * decay + per_minute * (1.0 - decay)
        self.last_totals = {name: totals[name] for name in LOADS.values()}


def _parse(topic: str, payload: bytes) -> tuple[tuple[str, int, str], int] | None:
    """((role, index, name), value) of a per-process counter's publish."""
    if not topic.startswith(PREFIX) or len(payload) > MAX_VALUE_BYTES:
        return None
    parts = topic[len(PREFIX) :].split("/")
    if len(parts) != 3 or parts[0] not in ROLES:
        return None
    role, index, name = parts
    if not index.isdigit() or int(index) >= MAX_INDEX or not name.isidentifier():
        return None
    try:
        return (role, int(index), name), int(payload)
    except ValueError:
        return None
