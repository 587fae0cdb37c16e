"""TLS for a listener (issue 11): the server's `ssl.SSLContext`, and the
identity and the fields of a verified client certificate.

TLS 1.2 at least; ciphers are OpenSSL's defaults unless the listener sets
`ciphers`. With a `cafile`, client certificates are verified against it:
required with `require_certificate` (mTLS), otherwise optional (a client may
present one, and it must then be valid). The handshake itself runs in the
event loop (uvloop's SSL transport) under the connect timeout.
"""

from __future__ import annotations

import ssl
from typing import Any, NamedTuple

from flockmq.listeners import Listener


class TLSConfigError(ValueError):
    """Certificates or keys that cannot be loaded: the message names the key."""


def server_context(listener: Listener) -> ssl.SSLContext:
    if listener.certfile is None or listener.keyfile is None:
        raise TLSConfigError(f"listener {listener.name}: TLS needs certfile and keyfile")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(listener.certfile, listener.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(
            f"listener {listener.name}: certfile/keyfile: cannot load "
            f"{listener.certfile} with {listener.keyfile}: {exc}"
        ) from None
    if listener.cafile is not None:
        try:
            context.load_verify_locations(cafile=listener.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(
                f"listener {listener.name}: cafile: cannot load {listener.cafile}: {exc}"
            ) from None
        context.verify_mode = (
            ssl.CERT_REQUIRED if listener.require_certificate else ssl.CERT_OPTIONAL
        )
    if listener.ciphers is not None:
        try:
            context.set_ciphers(listener.ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"listener {listener.name}: ciphers: {exc}") from None
    return context


def certificate_identity(peercert: dict[str, Any] | None) -> str | None:
    """The common name (CN) of a verified peer certificate, as
    `ssl.SSLObject.getpeercert()` returns it (None: no certificate, or no CN)."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None


# getpeercert()'s keys -> the names an auth hook's `certificate` gives them
_SCALARS = (("serialNumber", "serial"), ("notBefore", "not_before"), ("notAfter", "not_after"))
FIELD_OVERHEAD = 8  # bytes counted per field kept, beyond its name and value


class CertificateFields(NamedTuple):
    """What `certificate_fields` kept (None: no certificate), its size in
    bytes as counted against the budget, and how many fields it left out."""

    fields: dict[str, Any] | None
    size: int
    dropped: int


class _Budget:
    """Fields kept while their bytes fit (see `certificate_fields`)."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.dropped = 0

    def keep(self, into: dict[str, Any], name: str, value: object) -> None:
        if name in into:  # a repeated name: the first value stands
            self.dropped += 1
            return
        try:
            cost = len(name.encode()) + len(str(value).encode()) + FIELD_OVERHEAD
        except UnicodeEncodeError:  # (not sendable: msgpack would refuse it)
            cost = self.left + 1
        if not isinstance(value, str) or cost > self.left:
            self.dropped += 1
            return
        into[name] = value
        self.left -= cost


def certificate_fields(peercert: dict[str, Any] | None, max_bytes: int) -> CertificateFields:
    """A verified peer certificate, as `ssl.SSLObject.getpeercert()` returns
    it, as the auth hook's `certificate` argument: `{"subject": {name:
    value}, "issuer": {name: value}, "serial": str, "not_before": str,
    "not_after": str}` (names and values as getpeercert() gives them:
    "commonName", "organizationName", ...; of a name that repeats, the first
    value, the others left out). Bounded: each field kept costs its name's and value's UTF-8
    bytes (plus FIELD_OVERHEAD), and a field that would pass `max_bytes` is
    left out, counted in `dropped`; the serial and dates come first, then the
    subject's names in order, then the issuer's. A huge certificate thus
    never makes an envelope larger than the budget."""
    if not peercert:
        return CertificateFields(None, 0, 0)
    subject: dict[str, str] = {}
    issuer: dict[str, str] = {}
    fields: dict[str, Any] = {"subject": subject, "issuer": issuer}
    budget = _Budget(max_bytes)
    for key, name in _SCALARS:
        if key in peercert:
            budget.keep(fields, name, peercert[key])
    for key, into in (("subject", subject), ("issuer", issuer)):
        for rdn in peercert.get(key, ()):
            for pair in rdn:
                if isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str):
                    budget.keep(into, pair[0], pair[1])
                else:
                    budget.dropped += 1
    return CertificateFields(fields, max_bytes - budget.left, budget.dropped)
