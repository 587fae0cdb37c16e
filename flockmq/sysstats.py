"""Each process's counters, published as retained `$SYS/broker/<role>/<index>/<name>`
messages (the MQTT way to expose broker statistics), only when they changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from flockmq.envelopes import Kind, Route
from flockmq.mqtt.topics import SYS_PREFIX


class SysStats:
    def __init__(self, role: str, index: int, counters: Counter[str]) -> None:
        self.prefix = f"{SYS_PREFIX}broker/{role}/{index}/"
        self.counters = counters
        self.published: dict[str, int] = {}
        self.last = 0.0

    def changed(self) -> list[tuple[str, int]]:
        out = [(k, v) for k, v in self.counters.items() if self.published.get(k) != v]
        self.published.update(out)
        return out

    def maybe_publish(self, now: float, interval: float, send: Callable[[Route], None]) -> None:
        if now - self.last < interval:
            return
        self.last = now
        for name, value in self.changed():
            send(
                Route(Kind.ROUTE, "", self.prefix + name, str(value).encode(), 0, True, None, None)
            )
