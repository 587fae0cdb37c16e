"""flockmq.frontend.tls: the server context of a TLS listener, exercised with
certificates the test makes (trustme) and an in-memory TLS client (no sockets)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trustme

from flockmq import envelopes as env
from flockmq.frontend.tls import (
    TLSConfigError,
    certificate_fields,
    certificate_identity,
    server_context,
)
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


def test_a_client_certificates_fields_for_the_hook(tmp_path: Path, ca: trustme.CA) -> None:
    listener = dataclasses.replace(
        tls_listener(tmp_path, ca), cafile=str(tmp_path / "ca.pem"), require_certificate=True
    )
    device = ca.issue_cert("device-7.example", common_name="device-7", organization_name="Acme")
    end, error = handshake(server_context(listener), client_context(ca, device))
    assert error is None
    peercert: dict[str, Any] = end.getpeercert()  # type: ignore[assignment]
    fields, size, dropped = certificate_fields(peercert, 4096)
    assert fields is not None and dropped == 0 and 0 < size <= 4096
    assert fields["subject"]["commonName"] == "device-7"
    assert fields["subject"]["organizationName"] == "Acme"
    assert fields["issuer"]["organizationName"].startswith("trustme")  # its CA's name
    assert fields["serial"] == peercert["serialNumber"]
    assert fields["not_before"] == peercert["notBefore"]
    assert fields["not_after"] == peercert["notAfter"]
    assert set(fields) == {"subject", "issuer", "serial", "not_before", "not_after"}
    assert certificate_fields({}, 4096) == (None, 0, 0)
    assert certificate_fields(None, 4096) == (None, 0, 0)


def test_a_huge_certificate_is_cut_to_the_byte_budget() -> None:
    """Built to break it: 10,000 names of 1 KB each, a repeated name, a value
    that is not text, one that cannot be encoded, and pairs of odd shapes."""
    subject: tuple[tuple[tuple[object, ...], ...], ...] = tuple(
        ((f"name{i}", "v" * 1000),) for i in range(10_000)
    )
    subject += (
        (("commonName", "first"),),
        (("commonName", "second"),),
        (("odd", b"bytes"),),
        (("bad", "\ud800"),),
        (("one", "two", "three"),),
    )
    peercert: dict[str, Any] = {
        "subject": subject,
        "issuer": ((("commonName", "ca"),),),
        "serialNumber": "01AB",
        "notBefore": "Jan  1 00:00:00 2026 GMT",
        "notAfter": "Jan  1 00:00:00 2027 GMT",
    }
    fields, size, dropped = certificate_fields(peercert, 4096)
    assert fields is not None and size <= 4096
    assert fields["serial"] == "01AB" and fields["not_after"].endswith("2027 GMT")
    big = [name for name in fields["subject"] if name.startswith("name")]
    assert big == ["name0", "name1", "name2"]  # three 1 KB names fit beside the dates
    assert fields["subject"]["commonName"] == "first"  # small ones still fit after them
    assert fields["issuer"] == {"commonName": "ca"}
    # left out: the other big names, the repeated name, bytes, bad text, an odd pair
    assert dropped == (10_000 - 3) + 4
    # the envelope that carries it stays within the budget and the other fields
    envelope = env.Authenticate(env.Kind.AUTHENTICATE, 0, 1, "c", "u", None, "p", "cn", fields)
    assert len(msgpack.packb(list(envelope))) < 4096 + 200
    # a small budget keeps what fits, in order; 0 keeps nothing
    fields, size, _dropped = certificate_fields(peercert, 100)
    assert fields is not None and size <= 100 and "serial" in fields
    assert fields["subject"] == {"commonName": "first"}  # no 1 KB name, the small one
    fields, size, _dropped = certificate_fields(peercert, 0)
    assert fields == {"subject": {}, "issuer": {}} and size == 0
    # small enough: a repeated name keeps its first value
    small = {"subject": ((("commonName", "first"),), (("commonName", "second"),))}
    fields, _size, dropped = certificate_fields(small, 4096)
    assert fields is not None and fields["subject"] == {"commonName": "first"} and dropped == 1
