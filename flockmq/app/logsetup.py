"""Logging for every flockmq process: one line per event, naming the process.

Two formats: `text` (a line a person reads) and `json` (one JSON object per
line, for log collectors: time, process, level, logger, message, and the
traceback when there is one).

No kind of line can flood the log: `RateLimitFilter`, a safety net under
the rate limits of the lines clients cause (flockmq.isolation.RateLimitedLog),
lets through at most `burst` (100) lines of one kind (one call site: the logger and the message's
template, before its arguments are filled in) per `interval` seconds, and the
next line of that kind to get through says how many were held back. A client
that makes the broker log the same complaint thousands of times a second gets
a handful of lines. The kinds it remembers are bounded too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimitFilter(logging.Filter):
    def __init__(
        self,
        burst: int = 100,
        interval: float = 10.0,
        max_kinds: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.max_kinds = max_kinds
        self.clock = clock
        # kind -> [window start, lines let through in it, lines held back]
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        state = self._kinds.get(kind)
        if state is None:
            state = self._kinds[kind] = [now, 0.0, 0.0]
            if len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
        elif now - state[0] >= self.interval:
            state[0], state[1] = now, 0.0
        if state[1] >= self.burst:
            state[2] += 1
            return False
        state[1] += 1
        if state[2]:
            record.msg = f"{record.msg} ({int(state[2])} more like this held back)"
            state[2] = 0.0
        return True


class JSONFormatter(logging.Formatter):
    def __init__(self, who: str) -> None:
        super().__init__()
        self.who = who

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "process": self.who,
            "pid": record.process,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, who: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter(who))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s {who} %(levelname)s %(name)s: %(message)s")
        )
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
