"""The auth hook's `certificate` argument (issue 11), end to end: an mTLS
listener, certificates made by the test (trustme), paho clients, and a hook
(tests/e2e/hooks/flockmq_cert_hook.py) that allows a certificate by its
subject's organizationName, so the fields are seen to arrive whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from flockmq.app.probe import free_port

from .broker import Broker
from .clients import Client
from .hooks import use_test_hook


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    out = {"ca": where / "ca.pem", "cert": where / "server.pem", "key": where / "server.key"}
    ca.cert_pem.write_to_path(str(out["ca"]))
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(out["cert"]))
    server.private_key_pem.write_to_path(str(out["key"]))
    for name, org in (("acme", "Acme"), ("evil", "Evil")):
        leaf = ca.issue_cert(f"{name}.example", common_name=f"{name}-1", organization_name=org)
        leaf.cert_chain_pems[0].write_to_path(str(where / f"{name}.pem"))
        leaf.private_key_pem.write_to_path(str(where / f"{name}.key"))
        out[name], out[f"{name}_key"] = where / f"{name}.pem", where / f"{name}.key"
    return out


@pytest.fixture(scope="module")
def mtls_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def broker(
    tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Path], mtls_port: int
) -> Iterator[Broker]:
    where = tmp_path_factory.mktemp("hook-certs")
    plain = free_port()
    (where / "flockmq.toml").write_text(
        f"[[listeners]]\nport = {plain}\n"
        f'[[listeners]]\nport = {mtls_port}\ncertfile = "{certs["cert"]}"\n'
        f'keyfile = "{certs["key"]}"\ncafile = "{certs["ca"]}"\nrequire_certificate = true\n'
    )
    with pytest.MonkeyPatch.context() as env:
        hook = use_test_hook(env, "flockmq_cert_hook")
        b = Broker(where, 1, 1, ["--config", str(where / "flockmq.toml"), *hook], port=plain)
        b.start()
    yield b
    b.stop()


def test_the_hook_decides_by_the_certificates_fields(
    broker: Broker, certs: dict[str, Path], mtls_port: int
) -> None:
    for name, expected in (("acme", 0), ("evil", 0x87)):
        tls = {"ca_certs": str(certs["ca"]), "certfile": str(certs[name])}
        tls["keyfile"] = str(certs[f"{name}_key"])
        for level in (5, 4):
            client = Client(mtls_port, protocol=level, username="u", tls=tls)
            client.connect(expect_rc=expected)  # paho: 3.1.1's return code 5 as 0x87
            client.disconnect()
    plain = Client(broker.port)  # no certificate: the hook gets None, and allows it
    plain.connect()
    plain.disconnect()
