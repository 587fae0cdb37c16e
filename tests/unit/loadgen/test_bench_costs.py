"""make bench reports the cost of durability from flockmq's own rows of the
same run: persistent against clean sessions, power against process."""

from __future__ import annotations

from typing import Any

import bench
import pytest


def line(row: str, median: float | None, metric: str = "deliveries/s") -> dict[str, Any]:
    return {"row": row, "metric": metric, "median_a": median}


def test_ratios_of_the_rows_that_ran() -> None:
    lines = [
        line("fanin-q1", 20_000.0),
        line("fanin-q1", 300.0, metric="broker RSS peak MB"),
        line("fanin-q1-persistent", 13_000.0),
        line("pairs-q1-persistent", 20_000.0),
        line("pairs-q1-power", 5_000.0),
    ]
    costs = {row: (base, ratio) for row, _what, _v, base, ratio in bench.durability_costs(lines)}
    # pairs-q1 did not run: no persistent/clean ratio for pairs
    assert set(costs) == {"fanin-q1-persistent", "pairs-q1-power"}
    # mypy does not know that pytest.approx compares equal to a float.
    assert costs["fanin-q1-persistent"] == (20_000.0, pytest.approx(0.65))  # type: ignore[comparison-overlap]
    assert costs["pairs-q1-power"] == (20_000.0, pytest.approx(0.25))  # type: ignore[comparison-overlap]


def test_a_row_without_a_result_gives_no_ratio() -> None:
    assert bench.durability_costs([line("fanin-q1", None), line("fanin-q1-persistent", 1.0)]) == []
    assert bench.durability_costs([line("fanin-q1", 0.0), line("fanin-q1-persistent", 1.0)]) == []
