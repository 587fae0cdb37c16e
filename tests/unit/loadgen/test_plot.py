"""The throughput curve combines per-process samples taken at different
moments without inventing spikes (no matplotlib needed)."""

from __future__ import annotations

import pytest
from loadgen.plot import rates


def test_two_processes_sampled_out_of_phase_give_a_flat_rate() -> None:
    # each process sends 1000 msg/s, sampled every 0.2 s but 0.1 s apart
    a = [(0.2 * i, 200 * i, 100 * i) for i in range(1, 21)]
    b = [(0.2 * i + 0.1, round(1000 * (0.2 * i + 0.1)), 0) for i in range(0, 20)]
    curve = rates([a, b], step=0.25)
    inner = [c for c in curve if 0.5 <= c[0] <= 3.5]
    assert inner
    for _, sent, delivered in inner:
        assert sent == pytest.approx(2000, rel=0.01)
        assert delivered == pytest.approx(500, rel=0.01)


def test_totals_are_kept() -> None:
    a = [(0.3, 10, 10), (1.0, 100, 90)]
    curve = rates([a], step=0.25)
    assert sum(s for _, s, _ in curve) * 0.25 == pytest.approx(100)
    assert sum(d for _, _, d in curve) * 0.25 == pytest.approx(90)


def test_no_samples_no_curve() -> None:
    assert rates([[], []]) == []
