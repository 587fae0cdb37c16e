"""The auth hook tests/e2e/test_hook_certificates.py runs: it decides by the
client certificate's fields (`certificate`), so the test sees them arrive.
A client without a certificate (the plain listener) is allowed; one with a
certificate is allowed when its subject's organizationName is "Acme" and
every field came (its CN also as `cert`)."""

from __future__ import annotations

from typing import Any

from flockmq.hooks import Allow, Deny


def authenticate(
    client_id: str,
    username: str | None,
    password: bytes | None,
    peer: str,
    cert: str | None,
    certificate: dict[str, Any] | None = None,
) -> Allow | Deny:
    if certificate is None:
        return Allow() if cert is None else Deny(0x80)  # a CN without its fields
    subject, issuer = certificate["subject"], certificate["issuer"]
    complete = all(certificate.get(k) for k in ("serial", "not_before", "not_after"))
    if not (complete and issuer.get("organizationName") and subject.get("commonName") == cert):
        return Deny(0x80)
    if subject.get("organizationName") != "Acme":
        return Deny(0x87)
    return Allow()
