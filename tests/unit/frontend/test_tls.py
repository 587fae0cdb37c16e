"""flockmq.frontend.tls: the server context of a TLS listener, exercised with
certificates the test makes (trustme) and an in-memory TLS client (no sockets)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
import trustme

from flockmq.frontend.tls import TLSConfigError, certificate_identity, server_context
from flockmq.listeners import Listener


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_listener(tmp_path: Path, ca: trustme.CA) -> Listener:
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, cafile = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(cafile))
    return Listener("127.0.0.1", 8883, certfile=str(cert), keyfile=str(key))


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, str | None]:
    """A TLS handshake between two in-memory ends; returns the server's end and
    the error that stopped it, if any."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {"s": False, "c": False}
    for _ in range(20):
        for name, end in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as exc:
                    return s, f"{name}: {exc}"
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # a client's rejection of the server arrives after its handshake
            try:
                c.write(b"x")
                s_in.write(c_out.read())
                s.read(1)
            except ssl.SSLError as exc:
                return s, f"s: {exc}"
            return s, None
    return s, "no progress"


def client_context(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    return context


def test_a_client_that_trusts_the_ca_connects(tmp_path: Path, ca: trustme.CA) -> None:
    context = server_context(tls_listener(tmp_path, ca))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    end, error = handshake(context, client_context(ca))
    assert error is None
    assert end.version() in ("TLSv1.2", "TLSv1.3")
    assert certificate_identity(end.getpeercert()) is None  # no client certificate


def test_tls_1_2_clients_connect_too(tmp_path: Path, ca: trustme.CA) -> None:
    client = client_context(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    end, error = handshake(server_context(tls_listener(tmp_path, ca)), client)
    assert error is None
    assert end.version() == "TLSv1.2"


def test_mtls_requires_a_certificate_from_the_ca(tmp_path: Path, ca: trustme.CA) -> None:
    listener = tls_listener(tmp_path, ca)
    listener = dataclasses.replace(
        listener, cafile=str(tmp_path / "ca.pem"), require_certificate=True
    )
    context = server_context(listener)
    assert context.verify_mode == ssl.CERT_REQUIRED
    _, error = handshake(context, client_context(ca))
    assert error is not None and error.startswith("s:")
    device = ca.issue_cert("device-7.example", common_name="device-7")
    end, error = handshake(context, client_context(ca, device))
    assert error is None
    assert certificate_identity(end.getpeercert()) == "device-7"
    # a certificate from another CA is refused
    stranger = trustme.CA().issue_cert("device-8.example", common_name="device-8")
    _, error = handshake(context, client_context(ca, stranger))
    assert error is not None


def test_certificates_that_do_not_load_are_named(tmp_path: Path, ca: trustme.CA) -> None:
    listener = tls_listener(tmp_path, ca)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match="certfile/keyfile: cannot load"):
        server_context(Listener(certfile=str(tmp_path / "bad.pem"), keyfile=listener.keyfile))
    with pytest.raises(TLSConfigError, match="cafile: cannot load"):
        server_context(
            Listener(
                certfile=listener.certfile,
                keyfile=listener.keyfile,
                cafile=str(tmp_path / "bad.pem"),
            )
        )
    with pytest.raises(TLSConfigError, match="ciphers"):
        server_context(
            Listener(certfile=listener.certfile, keyfile=listener.keyfile, ciphers="NOPE")
        )
