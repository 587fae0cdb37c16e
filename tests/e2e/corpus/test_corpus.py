"""The malformed-packet corpus against the real broker (see cases.py for how
each expected answer follows from the specs): one test per group of cases,
run concurrently, reporting every mismatch at once by name; then the broker
must still be healthy (every process alive with its original pid, and other
clients still exchanging messages). Cases the broker gets wrong today are
separate tests marked xfail(strict=True), so a fix turns them into failures
to un-mark."""

from __future__ import annotations

import pytest

from ..broker import Broker
from ..test_malformed import ROLES, assert_healthy
from .cases import CASES, GROUPS, by_group
from .runner import run_cases

Pids = dict[tuple[str, int], int]


@pytest.fixture(scope="module")
def pids(broker: Broker) -> Pids:
    return {(role, i): broker.pid_of(role, i) for role, i in ROLES}


def test_corpus_size() -> None:
    assert len(CASES) >= 1700
    assert {case.level for case in CASES.values()} == {3, 4, 5}


@pytest.mark.parametrize("group", GROUPS)
def test_corpus_group(broker: Broker, pids: Pids, group: str) -> None:
    cases = list(by_group(group))
    results = run_cases(broker.host, broker.port, cases)
    mismatches = {name: why for name, why in results.items() if why is not None}
    report = "\n".join(
        f"{name}: sent {CASES[name].data.hex()}: {why}" for name, why in sorted(mismatches.items())
    )
    assert not mismatches, f"{len(mismatches)} of {len(cases)} cases differ:\n{report}"
    assert_healthy(broker, pids)


KNOWN = sorted((name, case.xfail) for name, case in CASES.items() if case.xfail is not None)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=why)) for n, why in KNOWN],
)
def test_corpus_known_mismatch(broker: Broker, pids: Pids, name: str) -> None:
    case = CASES[name]
    why = run_cases(broker.host, broker.port, [case])[name]
    assert why is None, f"{name}: sent {case.data.hex()}: {why}"
