"""make bench's cluster row: when it runs, why it is skipped (never silently
missing from the default set), and what the raw file keeps. No namespaces:
the reason namespaces are unavailable is given, not probed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bench
import pytest
from loadgen import cluster_rows


def test_default_set_runs_it_where_namespaces_are_available() -> None:
    assert cluster_rows.plan([], None) == cluster_rows.Plan(run=True)
    assert cluster_rows.plan(["cluster"], None).run
    assert cluster_rows.plan(["fanin-q0", "cluster"], None).run


def test_a_row_that_cannot_run_is_skipped_with_its_reason() -> None:
    why = "creating network namespaces (ip netns add) needs root"
    for wanted in ([], ["cluster"], ["pairs-q1", "cluster"]):
        plan = cluster_rows.plan(wanted, why)
        assert not plan.run
        assert plan.skipped == f"cluster row skipped: {why}"


def test_other_rows_asked_for_leave_it_out_without_a_message() -> None:
    assert cluster_rows.plan(["pairs-q1"], None) == cluster_rows.Plan(run=False)
    assert cluster_rows.plan(["pairs-q1"], "no root") == cluster_rows.Plan(run=False)


def test_the_raw_records_and_rates() -> None:
    results: dict[tuple[str, int], list[dict[str, Any]]] = {
        ("pairs-q1", 2): [{"deliveries_per_s": 20_000}, {"error": "boom"}],
        ("pairs-q1", 1): [{"deliveries_per_s": 30_000}],
    }
    records = cluster_rows.records(results)
    assert [(r["row"], r["hosts"], r["run"]) for r in records] == [
        ("pairs-q1", 1, 0),
        ("pairs-q1", 2, 0),
        ("pairs-q1", 2, 1),
    ]
    assert cluster_rows.rates(records, "pairs-q1", 2) == [20_000.0]  # the failed run left out
    assert cluster_rows.rates(records, "pairs-q1", 3) == []
    assert "not scaling" in cluster_rows.WHAT


def run_main(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, why: str | None, argv: list[str]
) -> tuple[int, dict[str, Any]]:
    measured: list[tuple[list[int], int, bool]] = []

    class FakeBenchCluster:
        @staticmethod
        def measure(counts: list[int], runs: int, quick: bool) -> tuple[dict[Any, Any], bool]:
            measured.append((counts, runs, quick))
            return {("pairs-q1", 1): [{"deliveries_per_s": 1.0}]}, False

        @staticmethod
        def print_table(results: Any, counts: list[int]) -> None:
            print("cluster table")

    monkeypatch.setattr(bench, "cluster_unavailable", lambda: why)
    monkeypatch.setitem(__import__("sys").modules, "bench_cluster", FakeBenchCluster)
    raw = tmp_path / "raw.json"
    code = bench.main([*argv, "--raw", str(raw), "--chart", ""])
    out = json.loads(raw.read_text())
    out["measured"] = measured
    return code, out


def test_only_cluster_runs_nothing_else_and_skips_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, raw = run_main(monkeypatch, tmp_path, "needs root", ["--only", "cluster"])
    assert code == 0 and raw["runs"] == [] and raw["measured"] == []
    assert raw["cluster"] == {"skipped": "cluster row skipped: needs root"}
    assert "cluster row skipped: needs root" in capsys.readouterr().err


def test_only_cluster_measures_1_2_3_hosts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, raw = run_main(monkeypatch, tmp_path, None, ["--only", "cluster", "--runs", "1"])
    assert code == 0 and raw["runs"] == []
    assert raw["measured"] == [([1, 2, 3], 1, False)]
    assert raw["cluster"]["runs"][0]["row"] == "pairs-q1"
    out = capsys.readouterr().out
    assert "cluster table" in out and "not scaling" in out


def test_an_unknown_row_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--only", "clusters"]) == 2
    assert "cluster" in capsys.readouterr().err
