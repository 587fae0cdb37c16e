"""Fixtures of the cluster tests: hosts that are network namespaces on a
bridge (tests/cluster/netns.py), and the tests' PostgreSQL reachable from
them. Where namespaces cannot be made (not root, no `ip`, creation refused)
every test that uses them SKIPS, saying why.

- `netns_network` (session): the bridge, its address (`host_address`) and
  /24 (`subnet`); removed with every host left on it at the end of the
  session, even a failed or interrupted one (pytest runs fixture teardown on
  Ctrl-C; a killed session's leftovers are removed by the next one).
- `netns_hosts` (function): `netns_hosts("a", "b")` gives new hosts (Host:
  `address`, `command`, `run`, `popen`, `link_down`, `link_up`), removed at
  the end of the test with whatever still runs inside them.
- `netns_postgres` (session): the tests' PostgreSQL server
  (tests/postgres.py), also listening on the bridge's address for the hosts.
- `netns_postgres_dsn`: a database of the test's own on it, as a DSN that
  connects through the bridge (host=the bridge's address), dropped after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.postgres import PostgresServer

from .netns import Host, NetnsUnavailable, Network

MakeHosts = Callable[..., tuple[Host, ...]]


@pytest.fixture(scope="session")
def netns_network() -> Iterator[Network]:
    try:
        network = Network.create()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces are not available: {exc}")
    try:
        yield network
    finally:
        network.remove()


@pytest.fixture
def netns_hosts(netns_network: Network) -> Iterator[MakeHosts]:
    made: list[str] = []

    def make(*names: str) -> tuple[Host, ...]:
        hosts = []
        for name in names:
            try:
                hosts.append(netns_network.add_host(name))
            except NetnsUnavailable as exc:
                pytest.skip(f"network namespaces are not available: {exc}")
            made.append(name)
        return tuple(hosts)

    yield make
    for name in made:
        netns_network.remove_host(name)


@pytest.fixture(scope="session")
def netns_postgres(postgres_server: PostgresServer, netns_network: Network) -> PostgresServer:
    postgres_server.listen_also(netns_network.host_address, str(netns_network.subnet))
    return postgres_server


@pytest.fixture
def netns_postgres_dsn(netns_postgres: PostgresServer, netns_network: Network) -> Iterator[str]:
    name = netns_postgres.create_database()
    yield (
        f"host={netns_network.host_address} port={netns_postgres.port} user=postgres dbname={name}"
    )
    netns_postgres.drop_database(name)
