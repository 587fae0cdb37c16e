"""TLS for a listener (issue 11): the server's `ssl.SSLContext`, and the
identity of a verified client certificate.

TLS 1.2 at least; ciphers are OpenSSL's defaults unless the listener sets
`ciphers`. With a `cafile`, client certificates are verified against it:
required with `require_certificate` (mTLS), otherwise optional (a client may
present one, and it must then be valid). The handshake itself runs in the
event loop (uvloop's SSL transport) under the connect timeout.
"""

from __future__ import annotations

import ssl
from typing import Any

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
