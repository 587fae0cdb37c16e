"""Config.routers (issue 14's first step): checked, and each router gets
endpoints and a bus id of its own; router 0 keeps the single router's."""

from __future__ import annotations

import pytest

from flockmq.config import Config, ConfigError, load_config


@pytest.mark.parametrize("routers", [0, -1, 65])
def test_routers_outside_1_to_64_are_refused(routers: int) -> None:
    with pytest.raises(ConfigError, match=f"routers: {routers} is outside 1-64"):
        Config(data_dir="/tmp/x", routers=routers).resolved()


def test_routers_from_toml_and_flags(tmp_path: object) -> None:
    path = f"{tmp_path}/f.toml"
    with open(path, "w") as fh:
        fh.write("routers = 3\n")
    assert load_config(path, {"data_dir": "/tmp/x"}).routers == 3
    assert load_config(path, {"data_dir": "/tmp/x", "routers": 2}).routers == 2
    assert load_config(None, {"data_dir": "/tmp/x"}).routers == 1
    with open(path, "w") as fh:
        fh.write('routers = "2"\n')
    with pytest.raises(ConfigError, match="routers: expected int"):
        load_config(path, {"data_dir": "/tmp/x"})


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_every_router_has_its_own_endpoints_and_id(transport: str) -> None:
    config = Config(
        workers=2,
        acceptors=3,
        auth_processes=2,
        routers=3,
        transport=transport,
        tcp_base_port=20000,
        runtime_dir="/run/x",
    )
    endpoints = [
        *(config.router_endpoint(i) for i in range(3)),
        *(config.router_work_endpoint(i) for i in range(3)),
        *(config.worker_endpoint(i) for i in range(2)),
        *(config.worker_work_endpoint(i) for i in range(2)),
        *(config.acceptor_endpoint(i) for i in range(3)),
        *(config.auth_endpoint(i) for i in range(2)),
    ]
    assert len(set(endpoints)) == len(endpoints)
    assert (
        config.router_endpoint(0)
        == Config(transport=transport, tcp_base_port=20000, runtime_dir="/run/x").router_endpoint()
    )
    ids = [
        *(config.router_id(i) for i in range(3)),
        *(config.worker_id(i) for i in range(2)),
        *(config.acceptor_id(i) for i in range(3)),
        *(config.auth_id(i) for i in range(2)),
    ]
    assert len(set(ids)) == len(ids) and config.router_id(0) == Config.ROUTER_ID
    assert [config.router_of(a) for a in range(3)] == [0, 1, 2]


def test_the_bus_ports_of_every_router_must_fit() -> None:
    base = 65535 - (1 + 2 * 2 + 2)  # the last port of one router, 2 workers, 2 acceptors
    Config(
        data_dir="/tmp/x", workers=2, acceptors=2, transport="tcp", tcp_base_port=base
    ).resolved()
    with pytest.raises(ConfigError, match="tcp_base_port"):
        Config(
            data_dir="/tmp/x",
            workers=2,
            acceptors=2,
            routers=2,
            transport="tcp",
            tcp_base_port=base,
        ).resolved()
