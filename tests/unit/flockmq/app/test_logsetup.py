"""flockmq.app.logsetup: no kind of line floods the log, and the JSON format."""

from __future__ import annotations

import json
import logging

from flockmq.app.logsetup import JSONFormatter, RateLimitFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, name: str = "flockmq.frontend") -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_one_kind_of_line_is_held_back_past_its_burst() -> None:
    clock = Clock()
    limit = RateLimitFilter(burst=3, interval=10.0, clock=clock)
    passed = [limit.filter(record("client %s: bad packet", f"c{i}")) for i in range(1000)]
    assert passed.count(True) == 3
    # another kind of line is not held back by this one
    assert limit.filter(record("client %s: keepalive expired", "c1"))
    assert limit.filter(record("client %s: bad packet", "c1", name="flockmq.router"))
    # the next window lets the kind through again, saying how many were held back
    clock.now = 10.0
    line = record("client %s: bad packet", "c7")
    assert limit.filter(line)
    assert line.getMessage() == "client c7: bad packet (997 more like this held back)"
    assert limit.filter(record("client %s: bad packet", "c8"))
    assert record("client %s: bad packet", "c8").getMessage() == "client c8: bad packet"


def test_the_kinds_remembered_are_bounded() -> None:
    limit = RateLimitFilter(burst=1, max_kinds=50, clock=Clock())
    for i in range(10_000):
        assert limit.filter(record(f"pre-formatted line {i}"))  # each its own kind
    assert len(limit._kinds) == 50


def test_json_lines_carry_the_process_and_the_traceback() -> None:
    formatter = JSONFormatter("acceptor-1")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = logging.LogRecord(
            "flockmq", logging.ERROR, __file__, 1, "x=%d", (5,), sys.exc_info()
        )
    entry = json.loads(formatter.format(line))
    assert entry["process"] == "acceptor-1"
    assert entry["level"] == "error"
    assert entry["logger"] == "flockmq"
    assert entry["message"] == "x=5"
    assert "ValueError: boom" in entry["traceback"]
    assert entry["time"][:2] == "20"
