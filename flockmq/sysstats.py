"""Each process's counters, published as retained `$SYS/broker/<role>/<index>/<name>`
messages (the MQTT way to expose broker statistics), only when they changed.

"Changed" is relative to what the router holds: a restarted router holds
nothing (its $SYS messages are not stored), so once a process learns that the
router is back (flockmq/runtime_process.py, on a new router incarnation)
`resend_all` makes its next `maybe_publish` send every counter, at once,
whether or not it moved since.

`gauges`, when given, is asked for the values that are a state rather than a
count (connected clients, queued messages) each time the counters are due, so
they are computed once per interval, not kept up to date on every message.
`extra`, when given, adds topics of its own (the router's broker-wide
Mosquitto topics, router/sys_topics.py), published like the counters: retained,
and only when their value changed."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from flockmq.envelopes import Kind, Route
from flockmq.mqtt.topics import SYS_PREFIX


def process_gauges() -> dict[str, int]:
    """This process's CPU time, resident memory (and its proportional share,
    flockmq/control.py `pss_of`) and open descriptors (psutil, imported here:
    only a router with a metrics port asks)."""
    import psutil

    from flockmq.control import pss_of

    proc = psutil.Process()
    with proc.oneshot():
        cpu = proc.cpu_times()
        return {
            "process_cpu_ms": int((cpu.user + cpu.system) * 1000),
            "process_rss_bytes": proc.memory_info().rss,
            "process_pss_bytes": pss_of(proc),
            "process_open_fds": proc.num_fds(),
        }


class SysStats:
    def __init__(
        self,
        role: str,
        index: int,
        counters: Counter[str],
        gauges: Callable[[], dict[str, int]] | None = None,
        extra: Callable[[float], list[tuple[str, bytes]]] | None = None,
        process_metrics: bool = False,
    ) -> None:
        self.role = role
        self.index = index
        self.prefix = f"{SYS_PREFIX}broker/{role}/{index}/"
        self.counters = counters
        self.gauges = gauges
        self.extra = extra
        # CPU, RSS and descriptors of this process, for the metrics endpoint
        # only: reading them reads /proc files, which a process that should be
        # reading nothing (a test that watches its reads) should not do
        self.process_metrics = process_metrics
        self.published: dict[str, int] = {}
        self.published_extra: dict[str, bytes] = {}
        self.last = 0.0

    def resend_all(self) -> None:
        """The router lost what it was sent: send everything again, at the
        next `maybe_publish` whatever the interval."""
        self.published.clear()
        self.published_extra.clear()
        self.last = -math.inf

    def changed(self) -> list[tuple[str, int]]:
        out = [(k, v) for k, v in self.counters.items() if self.published.get(k) != v]
        self.published.update(out)
        return out

    def maybe_publish(self, now: float, interval: float, send: Callable[[Route], None]) -> None:
        if now - self.last < interval:
            return
        self.last = now
        gauges = process_gauges() if self.process_metrics else {}
        if self.gauges is not None:
            gauges.update(self.gauges())
        for name, value in gauges.items():
            self.counters[name] = value  # set: Counter.update would add
        for name, value in self.changed():
            send(
                Route(Kind.ROUTE, "", self.prefix + name, str(value).encode(), 0, True, None, None)
            )
        if self.extra is not None:
            for topic, payload in self.extra(now):
                if self.published_extra.get(topic) != payload:
                    self.published_extra[topic] = payload
                    send(Route(Kind.ROUTE, "", topic, payload, 0, True, None, None))
