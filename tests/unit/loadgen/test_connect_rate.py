"""connect-rate's figure: connects completed per second, from "go" to the
last CONNACK of any client process."""

from __future__ import annotations

from loadgen.runner import connect_rate_summary
from loadgen.worker import WorkerResult

GO = 1_000_000_000


def test_rate_runs_to_the_last_connack_of_any_process() -> None:
    results = [
        WorkerResult(completed=3000, last_publish_ns=GO + 1_000_000_000),
        WorkerResult(completed=1000, failed=2, last_publish_ns=GO + 2_000_000_000),
    ]
    summary = connect_rate_summary(results, GO, seconds=5.0)
    assert summary == {"connects": 4000, "failed": 2, "connect_s": 2.0, "connects_per_s": 2000}


def test_no_connack_falls_back_to_the_run_time() -> None:
    summary = connect_rate_summary([WorkerResult()], GO, seconds=4.0)
    assert summary["connects"] == 0 and summary["connect_s"] == 4.0
